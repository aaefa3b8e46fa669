-- Claim up to N jobs: move each id from a pending list (high, normal, low) into the active
-- set with a lease deadline, and give it a new fencing token.
-- KEYS[1] queue base; ARGV[1] worker id, ARGV[2] max jobs, ARGV[3] lease ms, ARGV[4] queue
-- Returns a flat list, 7 values per job:
--   id, lease token, attempt, max_attempts, timeout_ms, payload, priority
local base, worker, n, lease_ms = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local queue = ARGV[4]
if redis.call('EXISTS', base .. 'paused') == 1 then return {} end
local now = now_ms()
local out = {}
local lists = {base .. 'pending:high', base .. 'pending:normal', base .. 'pending:low'}
local li = 1
while #out < n * 7 and li <= 3 do
  local id = redis.call('RPOP', lists[li])
  if not id then
    li = li + 1
  else
    local job = base .. 'job:' .. id
    -- one read for the checks and the reply; a key that is not a hash fails it (pcall)
    local ok, f = pcall(redis.call, 'HMGET', job, 'state', 'payload', 'lease', 'attempt',
      'max_attempts', 'timeout_ms', 'priority')
    if not ok or not f[2] then
      -- not a notifyq job record: set it aside instead of failing every claim
      redis.call('LPUSH', base .. 'quarantine', id)
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
  end
end
-- more work left: pass the wake-up on to another idle worker
if #out > 0 and redis.call('LLEN', lists[1]) + redis.call('LLEN', lists[2]) +
    redis.call('LLEN', lists[3]) > 0 then
  wake(base)
end
return out
