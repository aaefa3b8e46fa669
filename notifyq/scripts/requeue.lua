-- Put a dead-lettered job back on its queue with fresh attempts.
-- KEYS[1] queue base, KEYS[2] job hash, KEYS[3] result key; ARGV[1] job id, ARGV[2] queue.
-- Returns 1, or 0 when the job is not in the dead-letter list.
local base, job, id = KEYS[1], KEYS[2], ARGV[1]
local bad = check_keys(base, PENDING, {'dead', 'stats', 'wake', 'events', 'config'})
if bad then return bad end
local kind = redis.call('TYPE', job)['ok']
if kind ~= 'hash' and kind ~= 'none' then
  return redis.error_reply('WRONGTYPE ' .. job .. ' holds a ' .. kind .. ', not a job record')
end
if redis.call('LREM', base .. 'dead', 1, id) == 0 then return 0 end
local priority, group = unpack(redis.call('HMGET', job, 'priority', 'group'))
redis.call('HSET', job, 'state', 'queued', 'attempt', 0, 'worker', '')
redis.call('HDEL', job, 'error', 'finished_at', 'cancel', 'progress')
redis.call('PERSIST', job)
local idem = redis.call('HGET', job, 'idem')
if idem and idem ~= '' then redis.call('PERSIST', base .. 'idem:' .. idem) end
redis.call('DEL', KEYS[3])
push_pending(base, id, priority, group)
count(base, 'requeued')
wake(base)
emit(base, ARGV[2], 'enqueued', id, 0, now_ms(), ',"requeued":"dead_letter"')
return 1
