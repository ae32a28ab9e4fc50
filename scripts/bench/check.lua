-- wrk: POST /v1/check with random (user, asset) pairs of the bench-data
-- world. Half the pairs are a workspace owner on its own asset (allow), half
-- a random user (mostly deny). Env: KEY (API key), WORKSPACES (count),
-- HOT (0: any pair; N: a hot set of 11 x 5 pairs in each of the first N
-- workspaces: the owner and users u0..u9 on assets p0a0..p0a4, the cached
-- phase), CONSISTENCY (JSON of the consistency field).
local key = os.getenv("KEY")
local workspaces = tonumber(os.getenv("WORKSPACES"))
local hot = tonumber(os.getenv("HOT") or "0")
local consistency = os.getenv("CONSISTENCY") or '{"minimize_latency": true}'
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
local pool = workspaces
if hot > 0 then pool = math.min(hot, workspaces) end

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

local function pair()
  local w = math.random(0, pool - 1)
  if hot > 0 then
    local u = (math.random() < 0.5) and 2 * w or math.random(0, 9)
    return u, string.format("w%dp0a%d", w, math.random(0, 4))
  end
  local u
  if math.random() < 0.5 then u = 2 * w else u = math.random(0, 2 * pool - 1) end
  return u, string.format("w%dp%da%d", w, math.random(0, 4), math.random(0, 19))
end

function request()
  local u, a = pair()
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
