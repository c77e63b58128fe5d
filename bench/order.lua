-- order.lua — wrk script for `make bench`: POST /v1/orders, quantity 1, each
-- request with its own client_order_id "<run>-t<thread>-<counter>".
--
-- Environment (set by bench/run.sh):
--   BENCH_TOKEN       bearer token of a client with the fulfill scope (required)
--   BENCH_SKU         the SKU to order (required)
--   BENCH_RUN         prefix that keeps ids unique across runs on one daemon (default "r")
--   BENCH_EXPECT      the one status every response must have (default: any 2xx); the
--                     HTTP-ceiling run orders an unknown SKU and expects 422: "ok" then
--                     counts those, "non2xx" every other status
--   BENCH_END_USERS   N > 0: every order carries an end_user (issue 15) drawn from a pool of
--                     N people (id, ip over N/10 addresses, device, phone, a campaign tag),
--                     so the risk rules have subjects to count (bench/risk_cpu.sh)
--   BENCH_OUT         where done() writes its JSON summary (default: stdout only)
--   BENCH_UNANSWERED  where done() lists the client_order_ids sent but never answered
--                     (in flight when wrk stopped): run.sh asks the daemon about each,
--                     so the issued-codes check is exact, not approximate.
--
-- The JSON: requests (responses received), ok (2xx), non2xx, sent, unanswered,
-- socket errors, latency p50/p90/p99/max in ms (wrk's histogram, every response).

local token = os.getenv("BENCH_TOKEN") or error("BENCH_TOKEN is not set")
local sku = os.getenv("BENCH_SKU") or error("BENCH_SKU is not set")
local run = os.getenv("BENCH_RUN") or "r"
local expect = tonumber(os.getenv("BENCH_EXPECT") or "")
local end_users = tonumber(os.getenv("BENCH_END_USERS") or "") or 0

local threads = {}
local nthreads = 0

function setup(thread)
    nthreads = nthreads + 1
    thread:set("tid", nthreads)
    threads[nthreads] = thread
end

-- per thread (each wrk thread has its own Lua state)
sent = 0
ok = 0
non2xx = 0
answered = {}
local prefix
local headers

function init(args)
    prefix = run .. "-t" .. tid .. "-"
    headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
end

function request()
    sent = sent + 1
    local body
    if end_users > 0 then
        local k = (sent * 7919 + tid * 104729) % end_users
        local ipn = k % math.max(1, math.floor(end_users / 10))
        body = string.format('{"client_order_id":"%s%d","sku":"%s","quantity":1,"end_user":' ..
            '{"id":"user-%08d","ip":"10.%d.%d.%d","device_id":"device-%08d",' ..
            '"phone":"138%08d","tags":{"campaign":"spring"}}}',
            prefix, sent, sku, k, math.floor(ipn / 65536) % 256, math.floor(ipn / 256) % 256,
            ipn % 256, k, k)
    else
        body = '{"client_order_id":"' .. prefix .. sent .. '","sku":"' .. sku .. '","quantity":1}'
    end
    -- the request id comes back on every response, 2xx or not: it says which request
    -- was answered (wrk does not), so the ones in flight when wrk stops are known
    headers["X-Request-Id"] = prefix .. sent
    return wrk.format("POST", "/v1/orders", headers, body)
end

function response(status, headers, body)
    if (expect and status == expect) or (not expect and status >= 200 and status < 300) then
        ok = ok + 1
    else
        non2xx = non2xx + 1
    end
    local rid = headers["X-Request-Id"] or headers["x-request-id"]
    local n = rid and rid:sub(1, #prefix) == prefix and tonumber(rid:sub(#prefix + 1))
    if n then
        answered[n] = true
    else
        unmatched = (unmatched or 0) + 1
    end
end

function done(summary, latency, requests)
    local t_sent, t_ok, t_non2xx, t_unmatched = 0, 0, 0, 0
    local unanswered = {}
    for i, t in ipairs(threads) do
        local s, o, e = t:get("sent"), t:get("ok"), t:get("non2xx")
        t_sent, t_ok, t_non2xx = t_sent + s, t_ok + o, t_non2xx + e
        t_unmatched = t_unmatched + (t:get("unmatched") or 0)
        local a = t:get("answered")
        local p = run .. "-t" .. t:get("tid") .. "-"
        for n = 1, s do
            if not a[n] then
                unanswered[#unanswered + 1] = p .. n
            end
        end
    end
    local out = string.format(
        '{"requests":%d,"ok":%d,"non2xx":%d,"sent":%d,"unanswered":%d,"unmatched":%d,' ..
        '"duration_s":%.3f,"rps":%.1f,"socket_errors":{"connect":%d,"read":%d,"write":%d,' ..
        '"timeout":%d},"latency_ms":{"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f,"mean":%.3f}}',
        summary.requests, t_ok, t_non2xx, t_sent, #unanswered, t_unmatched,
        summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
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
    path = os.getenv("BENCH_UNANSWERED")
    if path then
        local f = assert(io.open(path, "w"))
        for _, id in ipairs(unanswered) do
            f:write(id, "\n")
        end
        f:close()
    end
end
