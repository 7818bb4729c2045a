-- webhooks.lua: wrk script that sends pre-generated, distinct, signed
-- Extend webhooks (bench/gen_webhooks.py) and checks every answer.
--
--   wrk -t T -c C -d D --latency -s bench/webhooks.lua URL -- PREFIX [DELAY_MS]
--
-- DELAY_MS is for webhooks_paced.lua, which waits that long before each
-- request (a function wrk calls only when the script defines it).
-- Thread i (0-based) reads PREFIX.i, so threads never send the same event.
-- A thread that runs out starts over and counts the repeats: a repeated
-- event is a "duplicate" for a gateway, not a fresh durable write, so the
-- harness sizes the files to avoid that and reports any repeat it sees.
-- done() prints one machine-readable "BENCH key=value ..." line.

local threads = {}
local next_id = 0

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
    table.insert(threads, thread)
end

function init(args)
    local prefix = args[1]
    pause_ms = tonumber(args[2] or "0") or 0
    local f = assert(io.open(prefix .. "." .. id, "rb"))
    local data = f:read("*a")
    f:close()
    reqs = {}
    local pos = 1
    while pos <= #data do
        local nl = data:find("\n", pos, true)
        local len = tonumber(data:sub(pos, nl - 1))
        reqs[#reqs + 1] = data:sub(nl + 1, nl + len)
        pos = nl + 1 + len
    end
    data = nil
    n = #reqs
    i = 0
    sent, repeats = 0, 0
    ok2xx, non2xx, accepted, duplicate, ignored = 0, 0, 0, 0, 0
    s401, s400, s503, sother = 0, 0, 0, 0
end

function request()
    i = i + 1
    if i > n then i = 1 end
    sent = sent + 1
    if sent > n then repeats = repeats + 1 end
    return reqs[i]
end

function response(status, headers, body)
    if status >= 200 and status < 300 then
        ok2xx = ok2xx + 1
        if body:find('"accepted"', 1, true) then
            accepted = accepted + 1
        elseif body:find('"duplicate"', 1, true) then
            duplicate = duplicate + 1
        elseif body:find('"ignored"', 1, true) then
            ignored = ignored + 1
        end
    else
        non2xx = non2xx + 1
        if status == 401 then s401 = s401 + 1
        elseif status == 400 then s400 = s400 + 1
        elseif status == 503 then s503 = s503 + 1
        else sother = sother + 1 end
    end
end

function done(summary, latency, requests)
    local keys = { "sent", "repeats", "ok2xx", "non2xx", "accepted", "duplicate", "ignored",
                   "s401", "s400", "s503", "sother" }
    local tot = {}
    for _, k in ipairs(keys) do tot[k] = 0 end
    for _, t in ipairs(threads) do
        for _, k in ipairs(keys) do tot[k] = tot[k] + (t:get(k) or 0) end
    end
    local e = summary.errors
    local line = string.format(
        "BENCH requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "err_connect=%d err_read=%d err_write=%d err_timeout=%d",
        summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
        e.connect, e.read, e.write, e.timeout)
    for _, k in ipairs(keys) do line = line .. string.format(" %s=%d", k, tot[k]) end
    io.write(line .. "\n")
    -- The latency distribution, for bench/results.py's plot.
    local dist = "BENCHLAT"
    for _, p in ipairs({ 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.9 }) do
        dist = dist .. string.format(" %g=%d", p, latency:percentile(p))
    end
    io.write(dist .. "\n")
end
