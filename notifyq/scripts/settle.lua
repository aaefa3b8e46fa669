-- Workers report how their jobs ended, any number of jobs of one queue in one call. Each is
-- refused unless the caller still holds its lease (fencing): a late worker whose lease was
-- taken over cannot write a second result.
-- KEYS[1] queue base; ARGV[1] queue name, then five values per job:
--   job id, lease token, how ('completed' | 'retry' | 'dead' | 'cancelled' | 'release'),
--   result or error JSON, retry delay ms (for 'retry')
-- Returns, per job in order, its new state, or 'stale' when the lease is no longer held, or
-- 'corrupt' when its record was replaced by something that is not a hash.
local base, queue = KEYS[1], ARGV[1]
local bad = check_keys(base, PENDING, {'active', 'delayed', 'dead', 'stats', 'wake', 'events',
  'config'})
if bad then return bad end
local now = now_ms()

local function settle(id, token, how, body, delay_ms)
  local job = base .. 'job:' .. id
  local f = job_fields(job, 'state', 'lease', 'attempt', 'max_attempts', 'priority',
    'result_ttl', 'idem', 'group')
  if not f then return 'corrupt' end
  local state, lease, attempt, max_attempts, priority, ttl, idem, group = unpack(f)
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
    redis.call('HSET', job, 'state', 'queued', 'worker', '', 'attempt', int(attempt, 1) - 1)
    push_pending(base, id, priority, group, true)
    wake(base)
    emit(base, queue, 'enqueued', id, int(attempt, 1) - 1, now, ',"requeued":"released"')
    return 'queued'
  end
  redis.call('HSET', job, 'error', body)
  count(base, 'failed')
  if how == 'retry' and int(attempt) < int(max_attempts, 1) then
    redis.call('ZREM', base .. 'active', id)
    redis.call('HSET', job, 'state', 'retrying', 'worker', '')
    redis.call('ZADD', base .. 'delayed', now + int(delay_ms), id)
    count(base, 'retried')
    failed(base, queue, id, attempt, now, body, true)
    emit(base, queue, 'retrying', id, attempt, now, ',"delay_ms":' .. int(delay_ms))
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
