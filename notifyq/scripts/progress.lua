-- Record a running job's progress (fenced) and emit a "progress" event.
-- KEYS[1] queue base; ARGV[1] queue name, ARGV[2] job id, ARGV[3] lease token,
-- ARGV[4] progress JSON. Returns 1, or 0 if the lease is lost.
local base, queue, id = KEYS[1], ARGV[1], ARGV[2]
local job = base .. 'job:' .. id
local bad = check_keys(base, {'events', 'config'})
if bad then return bad end
local state, lease, attempt = unpack(job_fields(job, 'state', 'lease', 'attempt') or {})
if state ~= 'active' or lease ~= ARGV[3] then return 0 end
redis.call('HSET', job, 'progress', ARGV[4])
emit(base, queue, 'progress', id, attempt, now_ms(), ',"progress":' .. ARGV[4])
return 1
