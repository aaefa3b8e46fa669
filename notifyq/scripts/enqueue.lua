-- Enqueue a batch of jobs.
-- KEYS[1] queue base "nq:{q}:", then for each job: KEYS[2i] job hash, KEYS[2i+1] idem key
--   (the job hash again when the job has none)
-- ARGV[1] queue name, ARGV[2] job count, then 9 values per job:
--   id, payload, priority, delay_ms, max_attempts, timeout_ms, result_ttl_s, idem key or '',
--   group or ''
-- Returns per job: {id, 1 if created / 0 if it already existed}
local base, queue, n = KEYS[1], ARGV[1], tonumber(ARGV[2])
local STRIDE = 9
-- the queue keys this call writes and must find as notifyq keeps them: each job's pending
-- list (its group's list and the rotation, or delayed), the events and config (the
-- counters and the wake list need no check: count() and wake() tolerate what something
-- else wrote there)
local writes, seen = {'events', 'config'}, {}
for i = 0, n - 1 do
  local a = 3 + STRIDE * i
  local names
  if tonumber(ARGV[a + 3]) > 0 then
    names = {'delayed'}
  elseif ARGV[a + 8] ~= '' then
    names = {'pending:g:' .. ARGV[a + 8], 'groups'}
  else
    names = {string.sub(pending_key(base, ARGV[a + 2]), #base + 1)}
  end
  for _, name in ipairs(names) do
    if not seen[name] then
      seen[name] = true
      writes[#writes + 1] = name
    end
  end
end
local bad = check_keys(base, writes)
if bad then return bad end
for i = 0, n - 1 do
  local idem_key = KEYS[3 + 2 * i]
  if ARGV[3 + STRIDE * i + 7] ~= '' then
    local kind = redis.call('TYPE', idem_key)['ok']
    if kind ~= 'none' and kind ~= 'string' then
      return redis.error_reply('WRONGTYPE ' .. idem_key .. ' holds a ' .. kind ..
        ' where notifyq keeps a string')
    end
  end
end
local now = now_ms()
local out = {}
local pushed = false
for i = 0, n - 1 do
  local job, idem_key = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local a = 3 + STRIDE * i
  local id, payload, priority, delay = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local idem, group = ARGV[a + 7], ARGV[a + 8]
  local existing = false
  if idem ~= '' then
    local found = redis.call('GET', idem_key)
    if found then
      out[#out + 1] = {found, 0}
      existing = true
    end
  end
  if not existing and redis.call('EXISTS', job) == 1 then
    out[#out + 1] = {id, 0}
    existing = true
  end
  if not existing then
    local state = 'queued'
    if delay > 0 then state = 'delayed' end
    -- fields at their default (priority normal, no timeout, no idempotency key, attempt and
    -- lease 0) are left out: a smaller record, and the readers treat a missing one as default
    local fields = {'payload', payload, 'state', state, 'max_attempts', ARGV[a + 4],
      'result_ttl', ARGV[a + 6], 'enqueued_at', now}
    if priority ~= 'normal' then
      fields[#fields + 1] = 'priority'
      fields[#fields + 1] = priority
    end
    if ARGV[a + 5] ~= '0' then
      fields[#fields + 1] = 'timeout_ms'
      fields[#fields + 1] = ARGV[a + 5]
    end
    if idem ~= '' then
      fields[#fields + 1] = 'idem'
      fields[#fields + 1] = idem
    end
    if group ~= '' then
      fields[#fields + 1] = 'group'
      fields[#fields + 1] = group
    end
    redis.call('HSET', job, unpack(fields))
    if idem ~= '' then redis.call('SET', idem_key, id) end
    if delay > 0 then
      redis.call('ZADD', base .. 'delayed', now + delay, id)
    else
      push_pending(base, id, priority, group)
      pushed = true
    end
    count(base, 'enqueued')
    local extra = ''
    if delay > 0 then extra = ',"delay_ms":' .. delay end
    emit(base, queue, 'enqueued', id, 0, now, extra)
    out[#out + 1] = {id, 1}
  end
end
if pushed then wake(base) end
return out
