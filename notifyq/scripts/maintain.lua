-- Housekeeping any worker runs: promote due delayed jobs, take back lapsed leases.
-- KEYS[1] queue base; ARGV[1] queue name, ARGV[2] max jobs to handle per kind
-- Returns {promoted, requeued, dead_lettered}
local base, queue, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local bad = check_keys(base, PENDING, {'delayed', 'active', 'dead', 'quarantine', 'wake',
  'stats', 'events', 'config'})
if bad then return bad end
local now = now_ms()
local promoted, requeued, buried = 0, 0, 0
local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('ZREM', base .. 'delayed', id)
  local job = base .. 'job:' .. id
  local f, kind = job_fields(job, 'state', 'priority', 'group')
  if not f or not f[1] then
    quarantine(base, id, f and ('no job record at ' .. job) or
      (job .. ' holds a ' .. kind .. ', not a job record'), now)
  elseif f[1] == 'delayed' or f[1] == 'retrying' then
    redis.call('HSET', job, 'state', 'queued')
    push_pending(base, id, f[2], f[3])
    promoted = promoted + 1
  end
end
local lapsed = redis.call('ZRANGEBYSCORE', base .. 'active', '-inf', now, 'LIMIT', 0, limit)
for _, id in ipairs(lapsed) do
  local job = base .. 'job:' .. id
  local f, kind = job_fields(job, 'state', 'attempt', 'max_attempts', 'priority', 'cancel',
    'group')
  local state, attempt, max_attempts, priority, cancel, group = unpack(f or {})
  if not state then
    redis.call('ZREM', base .. 'active', id)
    quarantine(base, id, f and ('no job record at ' .. job) or
      (job .. ' holds a ' .. kind .. ', not a job record'), now)
  elseif state ~= 'active' then
    redis.call('ZREM', base .. 'active', id)
  elseif cancel == '1' then
    finish(base, queue, id, 'cancelled', 'error',
      '{"type":"Cancelled","message":"cancelled while its worker was lost"}', now)
  elseif int(attempt) >= int(max_attempts, 1) then
    dead(base, queue, id, '{"type":"LeaseExpired","message":"worker lost its lease ' ..
      'on the last attempt (' .. int(attempt) .. ' of ' .. int(max_attempts, 1) .. ')"}', now)
    buried = buried + 1
  else
    redis.call('ZREM', base .. 'active', id)
    redis.call('HSET', job, 'state', 'queued', 'worker', '')
    count(base, 'lease_expired')
    push_pending(base, id, priority, group, true)
    failed(base, queue, id, attempt, now,
      '{"type":"LeaseExpired","message":"worker lost its lease"}', true)
    emit(base, queue, 'retrying', id, attempt, now, ',"delay_ms":0')
    requeued = requeued + 1
  end
end
if promoted + requeued > 0 then wake(base) end
return {promoted, requeued, buried}
