-- Extend the leases a worker holds. KEYS[1] queue base;
-- ARGV[1] lease ms, then pairs: job id, lease token.
-- Returns per job: 'ok', 'cancel' (kept, but cancellation was requested) or 'lost'.
local base, lease_ms = KEYS[1], tonumber(ARGV[1])
local bad = check_keys(base, {'active'})
if bad then return bad end
local deadline = now_ms() + lease_ms
local out = {}
for i = 2, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  -- a record something else replaced counts as lost
  local state, lease, cancel = unpack(job_fields(base .. 'job:' .. id, 'state', 'lease',
    'cancel') or {})
  if state == 'active' and lease == token then
    redis.call('ZADD', base .. 'active', 'XX', deadline, id)
    if cancel == '1' then out[#out + 1] = 'cancel' else out[#out + 1] = 'ok' end
  else
    out[#out + 1] = 'lost'
  end
end
return out
