-- wrk: check.lua's requests at a pace. Each connection waits DELAY_MS
-- between an answer and its next request, so the load offered stays under
-- what the server can serve, and the latency read is a check's own rather
-- than that of the queue in front of a saturated server. Env: as
-- check.lua, plus DELAY_MS.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "check.lua")
local pause = tonumber(os.getenv("DELAY_MS") or "4")

function delay()
  return pause
end
