-- wrk: POST /v1/workspaces (a management write: authorization, the same
-- decision asked again inside the write transaction, insert, audit event)
-- as random end users. Env: TOKENS (file, one end-user token per line),
-- DELAY_MS (optional: each connection waits this long between writes).
local tokens = {}
for line in io.lines(os.getenv("TOKENS")) do tokens[#tokens + 1] = line end
local pause = tonumber(os.getenv("DELAY_MS") or "0")
if pause > 0 then
  function delay() return pause end
end
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end
function request()
  local t = tokens[math.random(1, #tokens)]
  return wrk.format("POST", "/v1/workspaces",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. t}, "{}")
end
function response(status, headers, body)
  if status ~= 201 then io.stderr:write("status " .. status .. ": " .. body .. "\n") end
end
