-- webhooks_paced.lua: webhooks.lua with a pause of DELAY_MS before each
-- request on each connection, so C connections offer about
-- C / (DELAY_MS + latency) requests per ms: a partial load (bench/run.sh's
-- half load) rather than wrk flat out, whose latency is then the service
-- time, not the queueing behind a saturated server.
--
--   wrk -t T -c C -d D --latency -s bench/webhooks_paced.lua URL -- PREFIX DELAY_MS

local here = debug.getinfo(1, "S").source:sub(2):match("(.*/)") or "./"
dofile(here .. "webhooks.lua")

function delay()
    return pause_ms
end
