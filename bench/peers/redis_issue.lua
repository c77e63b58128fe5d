-- bench/peers: one issuance on Redis, run with EVALSHA sha 2 <stock list> <orders hash> <client order id>.
-- Idempotent like a real order API: a client order id seen before gets its code again.
-- Pop a code from the SKU's list, record the order (client order id -> code), return the code.
local done = redis.call('HGET', KEYS[2], ARGV[1])
if done then return done end
local code = redis.call('LPOP', KEYS[1])
if not code then return redis.error_reply('out_of_stock') end
redis.call('HSET', KEYS[2], ARGV[1], code)
return code
