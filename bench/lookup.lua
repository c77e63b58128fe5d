-- lookup.lua — wrk script for `make bench`: customer-service lookups,
-- POST /v1/codes/lookup {"code":"BENCH-%010d"}, the code in the body.
--
-- bench/run.sh imports BENCH-0000000001 .. BENCH-<total> and, by the time this runs,
-- stock has been issued first-in first-out, so codes 1 .. BENCH_ISSUED belong to orders
-- of the caller's client and the others are still in stock (run.sh checks that boundary
-- with single lookups before it starts wrk). Each request picks a code at random: issued
-- with probability BENCH_ISSUED_SHARE, otherwise one in stock. EVERY response is checked:
-- 200 and the diagnosis this client must get — "issued" for a code of its orders,
-- "not_found" for a code in stock (a support client may not learn that a code exists).
--
-- Environment (set by bench/run.sh):
--   BENCH_TOKEN         bearer token of a client with the support scope (required)
--   BENCH_TOTAL         codes imported (required)
--   BENCH_ISSUED        codes 1..BENCH_ISSUED are issued to the token's client (required)
--   BENCH_ISSUED_SHARE  share of lookups aimed at issued codes (default 0.5)
--   BENCH_OUT           where done() writes its JSON summary (default: stdout only)
--
-- The JSON: requests, ok (200 with the right diagnosis), wrong (200, wrong diagnosis),
-- non200, unmatched (no usable X-Request-Id), per expected diagnosis the count checked,
-- socket errors, latency p50/p90/p99/max in ms.

local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
local total = tonumber(os.getenv("BENCH_TOTAL") or error("BENCH_TOTAL is not set"))
local issued = tonumber(os.getenv("BENCH_ISSUED") or error("BENCH_ISSUED is not set"))
local share = tonumber(os.getenv("BENCH_ISSUED_SHARE") or "0.5")

local threads = {}
local nthreads = 0

function setup(thread)
    nthreads = nthreads + 1
    thread:set("tid", nthreads)
    threads[nthreads] = thread
end

-- per thread (each wrk thread has its own Lua state)
ok = 0
wrong = 0
non200 = 0
unmatched = 0
checked_issued = 0
checked_not_found = 0
local headers

function init(args)
    math.randomseed(os.time() * 1000 + tid)
    headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
end

function request()
    local n
    if issued > 0 and (issued >= total or math.random() < share) then
        n = math.random(1, issued)
    else
        n = math.random(issued + 1, total)
    end
    -- the response echoes the request id: it says which code this answer is about
    headers["X-Request-Id"] = "lk-" .. n
    return wrk.format("POST", "/v1/codes/lookup", headers,
                      string.format('{"code":"BENCH-%010d"}', n))
end

function response(status, headers, body)
    local rid = headers["X-Request-Id"] or headers["x-request-id"]
    local n = rid and tonumber(rid:match("^lk%-(%d+)$"))
    if not n then
        unmatched = unmatched + 1
        return
    end
    if status ~= 200 then
        non200 = non200 + 1
        return
    end
    local want = n <= issued and "issued" or "not_found"
    local got = body:match('"diagnosis":%s*"([%w_]+)"')
    if got == want then
        ok = ok + 1
    else
        wrong = wrong + 1
    end
    if want == "issued" then
        checked_issued = checked_issued + 1
    else
        checked_not_found = checked_not_found + 1
    end
end

function done(summary, latency, requests)
    local t = {ok = 0, wrong = 0, non200 = 0, unmatched = 0, checked_issued = 0,
               checked_not_found = 0}
    for _, th in ipairs(threads) do
        for k, _ in pairs(t) do
            t[k] = t[k] + th:get(k)
        end
    end
    local secs = summary.duration / 1e6
    local out = string.format(
        '{"requests":%d,"ok":%d,"wrong":%d,"non200":%d,"unmatched":%d,' ..
        '"checked":{"issued":%d,"not_found":%d},"duration_s":%.3f,"rps":%.1f,' ..
        '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
        '"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}}',
        summary.requests, t.ok, t.wrong, t.non200, t.unmatched, t.checked_issued,
        t.checked_not_found, secs, summary.requests / secs,
        summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout,
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000)
    io.write("BENCH_JSON " .. out .. "\n")
    local path = os.getenv("BENCH_OUT")
    if path then
        local f = assert(io.open(path, "w"))
        f:write(out, "\n")
        f:close()
    end
end
