-- wrk: AuthZEN action search (what may this user do with this asset?) for
-- the same random (user, asset) pairs as check.lua's uncached phase: half a
-- workspace owner on its own asset, half a random user. Env: KEY (API key),
-- WORKSPACES (count), HOT (0: any pair; N: the hot set of check.lua in the
-- first N workspaces, the cached phase).
local key = os.getenv("KEY")
local workspaces = tonumber(os.getenv("WORKSPACES"))
local hot = tonumber(os.getenv("HOT") or "0")
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
    '{"subject":{"type":"User","id":"u%d"},"resource":{"type":"Asset","id":"%s"}}', u, a)
  return wrk.format("POST", "/access/v1/search/action", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
