-- Shared helpers, prepended to every notifyq script. Times are the server's clock (ms),
-- so leases and delays never depend on the clocks of the machines running workers.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local DEFAULT_EVENTS_MAXLEN = 10000
-- PUBLISH, or SPUBLISH in the flavour loaded on a Redis Cluster (notifyq/scripts/__init__.py):
-- sharded pub/sub keeps a queue's messages on the shard that holds its keys
local PUBLISH = 'PUBLISH'
local events_maxlen = nil

-- Emit an event: append it to the queue's bounded stream (catch-up) and publish it on the
-- queue's events channel (low latency). ``extra`` is a JSON fragment: ',"result":{...}'.
-- Returns the event id (the stream entry id).
local function emit(base, queue, etype, id, attempt, now, extra)
  if not events_maxlen then
    events_maxlen = tonumber(redis.call('HGET', base .. 'config', 'events_maxlen'))
      or DEFAULT_EVENTS_MAXLEN
  end
  -- seq numbers a queue's events 1, 2, 3...: a reader that sees one skipped knows the
  -- stream was trimmed past it
  local seq = redis.call('HINCRBY', base .. 'config', 'seq', 1)
  local body = '"type":"' .. etype .. '","queue":"' .. queue .. '","id":"' .. id ..
    '","attempt":' .. attempt .. ',"ts":' .. now .. ',"seq":' .. seq .. extra
  local eid = redis.call('XADD', base .. 'events', 'MAXLEN', '~', events_maxlen, '*',
    'e', '{"v":1,' .. body .. '}')
  redis.call(PUBLISH, base .. 'events', '{"v":1,"event_id":"' .. eid .. '",' .. body .. '}')
  return eid
end

-- The terminal outcome of a job: the value of its result key and of its done message.
-- Ids and queue names are validated to [A-Za-z0-9._:-], so they need no JSON escaping.
local function outcome(queue, id, status, attempt, now, field, json)
  return '{"v":1,"queue":"' .. queue .. '","id":"' .. id .. '","status":"' .. status ..
    '","attempt":' .. attempt .. ',"finished_at":' .. now .. ',"' .. field .. '":' .. json .. '}'
end

-- Write a job's terminal state in one step: result key, job record, expiry, counter and
-- the done message. Nothing observes one without the others. ``known``: the record's
-- {attempt, result_ttl, idem} when the caller has read them already.
local function finish(base, queue, id, status, field, json, now, known)
  local job = base .. 'job:' .. id
  local attempt, ttl, idem
  if known then
    attempt, ttl, idem = known[1], known[2], known[3]
  else
    attempt, ttl, idem = unpack(redis.call('HMGET', job, 'attempt', 'result_ttl', 'idem'))
  end
  ttl = tonumber(ttl) or 86400
  local value = outcome(queue, id, status, attempt or 0, now, field, json)
  redis.call('HSET', job, 'state', status, 'finished_at', now)
  redis.call('ZREM', base .. 'active', id)
  if status == 'dead' then
    -- a dead letter and its outcome stay until it is requeued or purged
    redis.call('SET', base .. 'result:' .. id, value)
  else
    redis.call('SET', base .. 'result:' .. id, value, 'EX', ttl)
    redis.call('EXPIRE', job, ttl)
    if idem and idem ~= '' then
      redis.call('EXPIRE', base .. 'idem:' .. idem, ttl)
    end
  end
  redis.call('HINCRBY', base .. 'stats', status, 1)
  redis.call(PUBLISH, base .. 'done:' .. id, value)
  emit(base, queue, status, id, attempt or 0, now, ',"' .. field .. '":' .. json)
  return value
end

-- An attempt failed: the "failed" event, then the caller's "retrying" or "dead".
local function failed(base, queue, id, attempt, now, error_json, retry)
  emit(base, queue, 'failed', id, attempt, now,
    ',"retry":' .. tostring(retry) .. ',"error":' .. error_json)
end

local function dead(base, queue, id, error_json, now)
  local job = base .. 'job:' .. id
  redis.call('HSET', job, 'error', error_json)
  failed(base, queue, id, redis.call('HGET', job, 'attempt') or 0, now, error_json, false)
  redis.call('LPUSH', base .. 'dead', id)
  return finish(base, queue, id, 'dead', 'error', error_json, now)
end

-- Idle workers block on the wake list; it holds at most one token.
local function wake(base)
  if redis.call('LLEN', base .. 'wake') == 0 then
    redis.call('LPUSH', base .. 'wake', '1')
  end
end
