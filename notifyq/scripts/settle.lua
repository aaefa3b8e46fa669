-- Workers report how their jobs ended, any number of jobs of one queue in one call. Each is
-- refused unless the caller still holds its lease (fencing): a late worker whose lease was
-- taken over cannot write a second result.
-- KEYS[1] queue base; ARGV[1] queue name, then five values per job:
--   job id, lease token, how ('completed' | 'retry' | 'dead' | 'cancelled' | 'release'),
--   result or error JSON, retry delay ms (for 'retry')
-- Returns, per job in order, its new state, or 'stale' when the lease is no longer held.
local base, queue = KEYS[1], ARGV[1]
local now = now_ms()

local function settle(id, token, how, body, delay_ms)
  local job = base .. 'job:' .. id
  local state, lease, attempt, max_attempts, priority, ttl, idem = unpack(redis.call('HMGET',
    job, 'state', 'lease', 'attempt', 'max_attempts', 'priority', 'result_ttl', 'idem'))
  if state ~= 'active' or lease ~= token then return 'stale' end
  if how == 'completed' then
    finish(base, queue, id, 'completed', 'result', body, now, {attempt, ttl, idem})
    return 'completed'
  elseif how == 'cancelled' then
    finish(base, queue, id, 'cancelled', 'error', body, now, {attempt, ttl, idem})
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
  redis.call('HSET', job, 'error', body)
  redis.call('HINCRBY', base .. 'stats', 'failed', 1)
  if how == 'retry' and tonumber(attempt) < tonumber(max_attempts) then
    redis.call('ZREM', base .. 'active', id)
    redis.call('HSET', job, 'state', 'retrying', 'worker', '')
    redis.call('ZADD', base .. 'delayed', now + tonumber(delay_ms), id)
    failed(base, queue, id, attempt, now, body, true)
    emit(base, queue, 'retrying', id, attempt, now, ',"delay_ms":' .. tonumber(delay_ms))
    return 'retrying'
  end
  dead(base, queue, id, body, now)
  return 'dead'
end

local out = {}
for i = 2, #ARGV, 5 do
  out[#out + 1] = settle(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
end
return out
