-- wrk: the first page (100) of u0's assets in the 10,000-asset workspace
-- "big". Env: KEY.
local key = os.getenv("KEY")
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key}
local body = '{"subject":{"type":"User","id":"u0"},"action":{"name":"read"},"resource":{"type":"Asset","properties":{"workspace":"big"}},"page":{"limit":100}}'

function request()
  return wrk.format("POST", "/access/v1/search/resource", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then io.stderr:write("unexpected status " .. status .. "\n") end
end
