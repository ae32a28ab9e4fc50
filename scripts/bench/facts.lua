-- wrk: GET /v1/bench/facts (key check + the fact load of one check, no
-- decision), with the same random (user, asset) pairs as the uncached
-- check phase of check.lua (pairs.lua, HOT unset). Env: KEY, WORKSPACES.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
local pairs_ = require("pairs")
local key = os.getenv("KEY")
local headers = {["Authorization"] = "Bearer " .. key}
function init(args)
  pairs_.seed()
end
function request()
  local u, a = pairs_.pair()
  return wrk.format("GET", string.format("/v1/bench/facts?user=u%d&asset=%s", u, a), headers)
end
