-- A worker says it is alive: its entry in the queue's worker registry, refreshed at every
-- heartbeat. KEYS[1] queue base; ARGV[1] worker id, ARGV[2] ms the entry lives without a
-- new beat, ARGV[3] n, then n field/value pairs for the worker hash, then the ids of the
-- jobs it runs on this queue (the caller sends at most 100).
-- Writes nq:{q}:workers (ZSET: worker id -> last beat, ms) and nq:{q}:worker:<id> (HASH),
-- both expiring after ARGV[2] ms, so a killed worker's entry goes away by itself; drops the
-- members whose hash has expired. Returns the beat time (ms, server clock).
local base, id, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
local zset, hash = base .. 'workers', base .. 'worker:' .. id
for key, kind in pairs({[zset] = 'zset', [hash] = 'hash'}) do
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. found ..
      ' where notifyq keeps a ' .. kind)
  end
end
local now = now_ms()
local n = tonumber(ARGV[3])
local fields = {}
for i = 4, 3 + 2 * n do fields[#fields + 1] = ARGV[i] end
-- the jobs it runs, with their attempt and start from their records (server clock); ids
-- were checked by claim.lua, so they need no escaping in JSON
local jobs = {}
for i = 4 + 2 * n, #ARGV do
  local job = ARGV[i]
  local attempt, started = unpack(job_fields(base .. 'job:' .. job, 'attempt', 'started_at') or {})
  jobs[#jobs + 1] = string.format('{"id":"%s","attempt":%d,"started_at":%d}', job,
    tonumber(attempt) or 0, tonumber(started) or 0)
end
redis.call('HSET', hash, 'last_beat', now, 'jobs', '[' .. table.concat(jobs, ',') .. ']',
  unpack(fields))
redis.call('PEXPIRE', hash, ttl)
redis.call('ZADD', zset, now, id)
-- members left by workers that were killed: their hash has expired (a few at a time)
local old = redis.call('ZRANGEBYSCORE', zset, '-inf', '(' .. (now - ttl), 'LIMIT', 0, 10)
for _, other in ipairs(old) do
  if redis.call('EXISTS', base .. 'worker:' .. other) == 0 then
    redis.call('ZREM', zset, other)
  end
end
redis.call('PEXPIRE', zset, ttl)
return now
