-- Housekeeping any worker runs: promote due delayed jobs, take back lapsed leases.
-- KEYS[1] queue base; ARGV[1] queue name, ARGV[2] max jobs to handle per kind
-- Returns {promoted, requeued, dead_lettered}
local base, queue, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local now = now_ms()
local promoted, requeued, buried = 0, 0, 0
local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', base .. 'delayed', id)
  local job = base .. 'job:' .. id
  local state, priority = unpack(redis.call('HMGET', job, 'state', 'priority'))
  if state == 'delayed' or state == 'retrying' then
    redis.call('HSET', job, 'state', 'queued')
    redis.call('LPUSH', base .. 'pending:' .. (priority or 'normal'), id)
    promoted = promoted + 1
  end
end
local lapsed = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(lapsed) do
  local job = base .. 'job:' .. id
  local state, attempt, max_attempts, priority, cancel = unpack(redis.call('HMGET', job,
    'state', 'attempt', 'max_attempts', 'priority', 'cancel'))
  if state ~= 'active' then
    redis.call('ZREM', base .. 'active', id)
  elseif cancel == '1' then
    finish(base, queue, id, 'cancelled', 'error',
      '{"type":"Cancelled","message":"cancelled while its worker was lost"}', now)
  elseif tonumber(attempt) >= tonumber(max_attempts) then
    dead(base, queue, id, '{"type":"LeaseExpired","message":"worker lost its lease ' ..
      'on the last attempt (' .. attempt .. ' of ' .. max_attempts .. ')"}', now)
    buried = buried + 1
  else
    redis.call('ZREM', base .. 'active', id)
    redis.call('HSET', job, 'state', 'queued', 'worker', '')
    redis.call('HINCRBY', base .. 'stats', 'lease_expired', 1)
    redis.call('RPUSH', base .. 'pending:' .. (priority or 'normal'), id)
    failed(base, queue, id, attempt, now,
      '{"type":"LeaseExpired","message":"worker lost its lease"}', true)
    emit(base, queue, 'retrying', id, attempt, now, ',"delay_ms":0')
    requeued = requeued + 1
  end
end
if promoted + requeued > 0 then wake(base) end
return {promoted, requeued, buried}
