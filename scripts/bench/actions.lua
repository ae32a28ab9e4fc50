-- wrk: AuthZEN action search (what may this user do with this asset?) for
-- the same random (user, asset) pairs as check.lua (pairs.lua). Env: KEY
-- (API key), WORKSPACES, HOT (see pairs.lua).
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local pairs_ = require("pairs")
local key = os.getenv("KEY")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}

function init(args)
  pairs_.seed()
end

function request()
  local u, a = pairs_.pair()
  local body = string.format(
    '{"subject":{"type":"User","id":"u%d"},"resource":{"type":"Asset","id":"%s"}}', u, a)
  return wrk.format("POST", "/access/v1/search/action", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
