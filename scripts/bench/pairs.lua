-- The random (user, asset) pairs of the bench-data world that check.lua and
-- actions.lua ask about. Env: WORKSPACES (count), HOT (0: any pair, half a
-- workspace owner on its own asset and half a random user; N: a hot set of
-- 11 x 5 pairs in each of the first N workspaces: the owner and users
-- u0..u9 on assets p0a0..p0a4, the cached phases).
local workspaces = tonumber(os.getenv("WORKSPACES"))
local hot = tonumber(os.getenv("HOT") or "0")
local pool = workspaces
if hot > 0 then pool = math.min(hot, workspaces) end

local M = {}

-- Seeds each wrk thread differently.
function M.seed()
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

-- A user number and an asset id.
function M.pair()
  local w = math.random(0, pool - 1)
  if hot > 0 then
    local u = (math.random() < 0.5) and 2 * w or math.random(0, 9)
    return u, string.format("w%dp0a%d", w, math.random(0, 4))
  end
  local u
  if math.random() < 0.5 then u = 2 * w else u = math.random(0, 2 * pool - 1) end
  return u, string.format("w%dp%da%d", w, math.random(0, 4), math.random(0, 19))
end

return M
