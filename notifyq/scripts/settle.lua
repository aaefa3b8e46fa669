-- A worker reports how its job ended. Refused unless the caller still holds the lease
-- (fencing): a late worker whose lease was taken over cannot write a second result.
-- KEYS[1] queue base; ARGV[1] queue name, ARGV[2] job id, ARGV[3] lease token,
-- ARGV[4] how: 'completed' | 'retry' | 'dead' | 'cancelled' | 'release',
-- ARGV[5] result or error JSON, ARGV[6] retry delay ms (for 'retry')
-- Returns the new state, or 'stale' when the lease is no longer held.
local base, queue, id, token, how = KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job = base .. 'job:' .. id
local state, lease, attempt, max_attempts, priority = unpack(redis.call('HMGET', job,
  'state', 'lease', 'attempt', 'max_attempts', 'priority'))
if state ~= 'active' or lease ~= token then return 'stale' end
local now = now_ms()
if how == 'completed' then
  finish(base, queue, id, 'completed', 'result', ARGV[5], now)
  return 'completed'
elseif how == 'cancelled' then
  finish(base, queue, id, 'cancelled', 'error', ARGV[5], now)
  return 'cancelled'
elseif how == 'release' then
  -- graceful shutdown: the attempt did not happen
  redis.call('ZREM', base .. 'active', id)
  redis.call('HSET', job, 'state', 'queued', 'worker', '')
  redis.call('HINCRBY', job, 'attempt', -1)
  redis.call('RPUSH', base .. 'pending:' .. (priority or 'normal'), id)
  wake(base)
  emit(base, queue, 'enqueued', id, tonumber(attempt) - 1, now, ',"requeued":"released"')
  return 'queued'
end
redis.call('HSET', job, 'error', ARGV[5])
redis.call('HINCRBY', base .. 'stats', 'failed', 1)
if how == 'retry' and tonumber(attempt) < tonumber(max_attempts) then
  redis.call('ZREM', base .. 'active', id)
  redis.call('HSET', job, 'state', 'retrying', 'worker', '')
  redis.call('ZADD', base .. 'delayed', now + tonumber(ARGV[6]), id)
  failed(base, queue, id, attempt, now, ARGV[5], true)
  emit(base, queue, 'retrying', id, attempt, now, ',"delay_ms":' .. tonumber(ARGV[6]))
  return 'retrying'
end
dead(base, queue, id, ARGV[5], now)
return 'dead'
