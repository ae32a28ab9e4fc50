-- wrk: POST /v1/check/batch, 1,000 requests per call over a hot set (the
-- cached path). Env: KEY, WORKSPACES, HOT.
local key = os.getenv("KEY")
local workspaces = tonumber(os.getenv("WORKSPACES"))
local hot = math.min(tonumber(os.getenv("HOT") or "50"), workspaces)
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
local bodies = {}

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
  for b = 1, 8 do
    local items = {}
    for i = 1, 1000 do
      local w = math.random(0, hot - 1)
      local u = (math.random() < 0.5) and 2 * w or math.random(0, 2 * hot - 1)
      items[i] = string.format(
        '{"principal":{"type":"User","id":"u%d"},"action":"read","resource":{"type":"Asset","id":"w%dp%da%d"}}',
        u, w, math.random(0, 4), math.random(0, 19))
    end
    bodies[b] = '{"requests":[' .. table.concat(items, ",") .. ']}'
  end
end

function request()
  return wrk.format("POST", "/v1/check/batch", headers, bodies[math.random(1, #bodies)])
end

function response(status, headers, body)
  if status ~= 200 then io.stderr:write("unexpected status " .. status .. "\n") end
end
