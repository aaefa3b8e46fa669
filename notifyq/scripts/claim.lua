-- Claim up to N jobs: move each id from a pending list (high, normal and the groups in
-- turn, low) into the active set with a lease deadline, and give it a new fencing token.
-- KEYS[1] queue base; ARGV[1] worker id, ARGV[2] max jobs, ARGV[3] lease ms, ARGV[4] queue
-- Returns {jobs, refused, wait}. jobs: a flat list, 7 values per job:
--   id, lease token, attempt, max_attempts, timeout_ms, payload, priority
-- refused: a flat list, 3 values per id taken off a pending list but not handed out because
-- its record is not a sound notifyq job (something else wrote it):
--   id (printable), 'quarantined' or 'dead', the reason
-- wait: 0, or while the queue's rate limit allows no more starts, the ms until it does
local base, worker, n, lease_ms = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local queue = ARGV[4]
if redis.call('EXISTS', base .. 'paused') == 1 then return {{}, {}} end
local bad = check_keys(base, PENDING, {'active', 'quarantine', 'wake', 'stats', 'events',
  'config', 'dead'})
if bad then return bad end
local now = now_ms()
local out, refused = {}, {}
-- the rate limit: start no more jobs than the window has room for
local rate, rate_bad = rate_window(base, now)
if rate_bad then return rate_bad end
if rate and rate.used >= rate.jobs then return {{}, {}, rate_wait(base, rate, now)} end
if rate then n = math.min(n, rate.jobs - rate.used) end
local STATES = {queued = true, delayed = true, active = true, retrying = true,
  completed = true, dead = true, cancelled = true}

-- Why an id and the fields read for it (nil when the key is not a hash) cannot be a job
-- notifyq wrote: nil if they can; else 'quarantined' or 'dead', and the reason.
local function unsound(id, job, f, kind)
  if #id > 128 or not string.match(id, '^[%w._:][%w._:%-]*$') then
    return 'quarantined', 'not a job id'
  elseif not f then
    return 'quarantined', job .. ' holds a ' .. kind .. ', not a job record'
  elseif not f[1] and not f[2] then
    return 'quarantined', 'no job record at ' .. job
  elseif not f[2] then
    return 'quarantined', job .. ' has no payload field'
  elseif not f[1] or not STATES[f[1]] then
    return 'quarantined', job .. ' has no valid state field'
  elseif f[1] ~= 'queued' then
    return nil  -- a second entry for a job that has moved on: nothing to do
  end
  for i, name in ipairs({'lease', 'attempt', 'max_attempts', 'timeout_ms'}) do
    local value = f[2 + i]
    if (value or name == 'max_attempts') and not string.match(value or '', '^%d+$') then
      return 'dead', job .. ' field ' .. name .. ' holds ' ..
        (value and ('"' .. printable(value, 40) .. '"') or 'nothing') .. ', not an integer'
    end
  end
  if f[7] and f[7] ~= 'high' and f[7] ~= 'low' and f[7] ~= 'normal' then
    return 'dead', job .. ' field priority holds "' .. printable(f[7], 40) ..
      '", not high, normal or low'
  end
  return nil
end

local li = 1
-- at most 100 refusals per call: a flood of foreign ids must not hold the server long
while #out < n * 7 and #refused < 300 and li <= 3 do
  local id = pop_pending(base, PENDING[li], now)
  if not id then
    li = li + 1
  else
    local job = base .. 'job:' .. id
    local f, kind = job_fields(job, 'state', 'payload', 'lease', 'attempt', 'max_attempts',
      'timeout_ms', 'priority')
    local fate, reason = unsound(id, job, f, kind)
    if fate == 'quarantined' then
      -- not a notifyq job record: set it aside instead of failing every claim
      quarantine(base, id, reason, now)
    elseif fate == 'dead' then
      dead(base, queue, id, cjson.encode({type = 'CorruptRecord', message = reason}), now)
    elseif f[1] == 'queued' then
      local token = (tonumber(f[3]) or 0) + 1
      local attempt = (tonumber(f[4]) or 0) + 1
      redis.call('HSET', job, 'state', 'active', 'worker', worker, 'started_at', now,
        'lease', token, 'attempt', attempt)
      redis.call('ZADD', base .. 'active', now + lease_ms, id)
      emit(base, queue, 'started', id, attempt, now, ',"worker":"' .. worker .. '"')
      out[#out + 1] = id
      out[#out + 1] = token
      out[#out + 1] = attempt
      out[#out + 1] = f[5]
      out[#out + 1] = f[6]
      out[#out + 1] = f[2]
      out[#out + 1] = f[7]
    end
    if fate then
      refused[#refused + 1] = printable(id)
      refused[#refused + 1] = fate
      refused[#refused + 1] = reason
    end
  end
end
local wait = rate and rate_record(base, rate, out, 7, now) or 0
-- more work left: pass the wake-up on to another idle worker (unless the limit stops it)
if wait == 0 and (#out > 0 or #refused > 0) and redis.call('LLEN', base .. PENDING[1]) + redis.call('LLEN', base .. PENDING[2]) +
    redis.call('LLEN', base .. PENDING[3]) > 0 then
  wake(base)
end
return {out, refused, wait}
