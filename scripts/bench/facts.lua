-- wrk: GET /v1/bench/facts (key check + the fact load of one check, no
-- decision), with the same random (user, asset) pairs as the uncached
-- check phase of check.lua. Env: KEY, WORKSPACES.
local key = os.getenv("KEY")
local workspaces = tonumber(os.getenv("WORKSPACES"))
local headers = {["Authorization"] = "Bearer " .. key}
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
function request()
  local w = math.random(0, workspaces - 1)
  local u
  if math.random() < 0.5 then u = 2 * w else u = math.random(0, 2 * workspaces - 1) end
  local path = string.format("/v1/bench/facts?user=u%d&asset=w%dp%da%d", u, w,
    math.random(0, 4), math.random(0, 19))
  return wrk.format("GET", path, headers)
end
