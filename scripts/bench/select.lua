-- wrk: GET /v1/bench/select (the floor: key check + one indexed SELECT).
-- Env: KEY, WORKSPACES.
local key = os.getenv("KEY")
local workspaces = tonumber(os.getenv("WORKSPACES"))
local headers = {["Authorization"] = "Bearer " .. key}
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
function request()
  local path = string.format("/v1/bench/select?asset=w%dp%da%d", math.random(0, workspaces - 1),
    math.random(0, 4), math.random(0, 19))
  return wrk.format("GET", path, headers)
end
