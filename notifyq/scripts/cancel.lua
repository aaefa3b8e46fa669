-- Cancel a job. KEYS[1] queue base, KEYS[2] job hash; ARGV[1] queue name, ARGV[2] job id.
-- A waiting job is cancelled at once; a running one is flagged and its worker told at its
-- next lease renewal. Returns 'cancelled', 'requested', the terminal state it already
-- has, or false when there is no such job.
local base, job, queue, id = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local bad = check_keys(base, PENDING, {'delayed', 'active', 'stats', 'events', 'config'})
if bad then return bad end
local state, priority, group = unpack(redis.call('HMGET', job, 'state', 'priority', 'group'))
if not state then return false end
if state == 'queued' then
  unlist_pending(base, id, priority, group)
elseif state == 'delayed' or state == 'retrying' then
  redis.call('ZREM', base .. 'delayed', id)
elseif state == 'active' then
  redis.call('HSET', job, 'cancel', '1')
  return 'requested'
else
  return state
end
finish(base, queue, id, 'cancelled', 'error',
  '{"type":"Cancelled","message":"cancelled before it ran"}', now_ms())
return 'cancelled'
