-- wrk: POST /v1/check with random (user, asset) pairs of the bench-data
-- world (pairs.lua). Env: KEY (API key), WORKSPACES, HOT (see pairs.lua),
-- CONSISTENCY (JSON of the consistency field).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local pairs_ = require("pairs")
local key = os.getenv("KEY")
local consistency = os.getenv("CONSISTENCY") or '{"minimize_latency": true}'
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}

function init(args)
  pairs_.seed()
end

function request()
  local u, a = pairs_.pair()
  local body = string.format(
    '{"principal":{"type":"User","id":"u%d"},"action":"read","resource":{"type":"Asset","id":"%s"},"consistency":%s}',
    u, a, consistency)
  return wrk.format("POST", "/v1/check", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
