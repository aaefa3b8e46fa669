-- Delete up to ARGV[1] dead-lettered jobs with their records and results.
-- KEYS[1] queue base. Returns how many were deleted (call again until 0).
local base = KEYS[1]
local bad = check_keys(base, {'dead'})
if bad then return bad end
local n = 0
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('RPOP', base .. 'dead')
  if not id then break end
  local idem = (job_fields(base .. 'job:' .. id, 'idem') or {})[1]
  if idem and idem ~= '' then redis.call('DEL', base .. 'idem:' .. idem) end
  redis.call('DEL', base .. 'job:' .. id, base .. 'result:' .. id)
  n = n + 1
end
return n
