-- Record a running job's progress (fenced). KEYS[1] job hash;
-- ARGV[1] lease token, ARGV[2] progress JSON. Returns 1, or 0 if the lease is lost.
local state, lease = unpack(redis.call('HMGET', KEYS[1], 'state', 'lease'))
if state ~= 'active' or lease ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'progress', ARGV[2])
return 1
