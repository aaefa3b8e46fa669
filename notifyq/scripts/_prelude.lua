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
-- The quarantine list keeps this many entries, the newest.
local MAX_QUARANTINE = 10000
-- Seconds an outcome stays by default, and at most (ops.py has the same numbers).
local DEFAULT_RESULT_TTL, MAX_RESULT_TTL = 86400, 315360000

-- What notifyq keeps at each key of a queue, named by what follows the queue base.
-- (A group's own pending list, 'pending:g:<group>', is a list too: see kind_of.)
local KINDS = {['pending:high'] = 'list', ['pending:normal'] = 'list', ['pending:low'] = 'list',
  active = 'zset', delayed = 'zset', dead = 'list', quarantine = 'list', wake = 'list',
  stats = 'hash', events = 'stream', config = 'hash', groups = 'list', starts = 'zset'}
-- The three priority lists (claim.lua reads them in this order), then the rotation of the
-- groups that have waiting jobs: what a script that moves ids to or from pending checks.
local PENDING = {'pending:high', 'pending:normal', 'pending:low', 'groups'}
-- The member of the rotation that stands for the ungrouped normal list (':' is in no group
-- name), so that jobs without a group take their turn with the groups.
local UNGROUPED = ':ungrouped'

local function kind_of(name)
  if string.sub(name, 1, 10) == 'pending:g:' then return 'list' end
  return KINDS[name]
end

-- A value (an id, a field) as it can be shown in JSON and messages: its first ``most``
-- (200) bytes, each outside [A-Za-z0-9._:-] written \xNN.
local function printable(value, most)
  local shown = string.gsub(string.sub(value, 1, most or 200), '[^%w._:%-]', function(c)
    return string.format('\\x%02x', string.byte(c))
  end)
  return shown
end

-- A script stops at the first command that fails, keeping the writes made before it. So a
-- script checks, before its first write, that the queue keys it writes hold what notifyq
-- keeps there (something else may have written them). Returns an error reply naming the
-- key, which notifyq raises as CorruptRecord, or nil.
local function check_keys(base, ...)
  for _, names in ipairs({...}) do
    for _, name in ipairs(names) do
      local kind = redis.call('TYPE', base .. name)['ok']
      if kind ~= 'none' and kind ~= kind_of(name) then
        return redis.error_reply('WRONGTYPE ' .. base .. name .. ' holds a ' .. kind ..
          ' where notifyq keeps a ' .. kind_of(name))
      end
      if name == 'config' then
        local seq, grouped = unpack(redis.call('HMGET', base .. 'config', 'seq', 'grouped'))
        if seq and not string.match(seq, '^%d+$') then
          return redis.error_reply('CORRUPT ' .. base .. 'config field seq holds "' ..
            printable(seq, 40) .. '", not an event count')
        end
        if grouped and not string.match(grouped, '^%-?%d+$') then
          return redis.error_reply('CORRUPT ' .. base .. 'config field grouped holds "' ..
            printable(grouped, 40) .. '", not a count of jobs')
        end
      end
    end
  end
  return nil
end

-- The pending list of a priority; a value that is not a priority means normal, so that no
-- id is ever pushed to a list no worker reads.
local function pending_key(base, priority)
  if priority == 'high' or priority == 'low' then
    return base .. 'pending:' .. priority
  end
  return base .. 'pending:normal'
end

-- A job record's group as a name notifyq can build a key from, or nil: no group, or a value
-- something else wrote (that job then waits in the ungrouped list rather than being lost).
local function group_of(group)
  if group and #group <= 64 and string.match(group, '^[%w._%-]+$') then
    return group
  end
  return nil
end

-- Put a job id on the list it waits in: the only way an id joins a pending list, so that
-- the rotation (KEYS 'groups') always holds exactly the groups whose list is not empty, and
-- config field 'grouped' counts the ids in group lists.
-- ``front``: the job runs next (a lapsed lease, a release): RPUSH, and a group that joins
-- the rotation joins it at its head; else LPUSH, at the back. Grouped jobs are normal
-- priority (enqueue refuses a group with another). A group list that holds something else
-- (another program wrote it) is left alone and the job waits in the ungrouped normal list.
local function push_pending(base, id, priority, group, front)
  group = group_of(group)
  if group then
    local ok, n
    if front then
      ok, n = pcall(redis.call, 'RPUSH', base .. 'pending:g:' .. group, id)
    else
      ok, n = pcall(redis.call, 'LPUSH', base .. 'pending:g:' .. group, id)
    end
    if ok then
      redis.call('HINCRBY', base .. 'config', 'grouped', 1)
      if n == 1 then
        -- the group had nothing waiting: it joins the rotation (head = the right end)
        local rotation = base .. 'groups'
        local size
        if front then
          size = redis.call('RPUSH', rotation, group)
        else
          size = redis.call('LPUSH', rotation, group)
        end
        if size == 1 then
          -- the first group: jobs without a group take their turn too, first
          redis.call('RPUSH', rotation, UNGROUPED)
        end
      end
      return
    end
  end
  if front then
    redis.call('RPUSH', pending_key(base, priority), id)
  else
    redis.call('LPUSH', pending_key(base, priority), id)
  end
end

-- Take a job id off the list it waits in (cancel). Returns how many entries were removed.
local function unlist_pending(base, id, priority, group)
  group = group_of(group)
  if group then
    local list = base .. 'pending:g:' .. group
    local ok, n = pcall(redis.call, 'LREM', list, 0, id)
    if ok and n > 0 then
      redis.call('HINCRBY', base .. 'config', 'grouped', -n)
      if redis.call('LLEN', list) == 0 then
        -- its last job: the group leaves the rotation, and the rotation goes with its last
        -- group (what remains is the ungrouped member)
        redis.call('LREM', base .. 'groups', 0, group)
        if redis.call('LLEN', base .. 'groups') <= 1 then
          redis.call('DEL', base .. 'groups')
        end
      end
      return n
    end
  end
  return redis.call('LREM', pending_key(base, priority), 0, id)
end

-- Add to a lifetime counter of the queue. A counter that something else overwrote with a
-- value that is not an integer starts again from this count, rather than failing the script;
-- a stats key that is not a hash loses the count (so scripts need no TYPE check of it).
local function count(base, field, n)
  if not pcall(redis.call, 'HINCRBY', base .. 'stats', field, n or 1) then
    -- the field held something else: start again; the whole key did: the count is lost
    pcall(redis.call, 'HSET', base .. 'stats', field, n or 1)
  end
end

-- An integer read from a job record, or ``default`` (0) when it holds something else: a
-- record something else wrote must not break the JSON notifyq writes, nor a command.
local function int(value, default)
  local n = tonumber(value)
  if not n or n ~= n or n >= 2 ^ 53 or n <= -2 ^ 53 then
    return default or 0
  end
  return math.floor(n)
end


-- Set an id aside: its record is missing or is not a notifyq job (something else wrote
-- it). The entry says why; the record itself is left as it is.
local function quarantine(base, id, reason, now)
  redis.call('LPUSH', base .. 'quarantine',
    cjson.encode({id = printable(id), reason = reason, at = now}))
  redis.call('LTRIM', base .. 'quarantine', 0, MAX_QUARANTINE - 1)
  count(base, 'quarantined')
end

-- HMGET on a job record that may have been replaced by something else: the values, or
-- nil and what the key holds instead (its type) when it is not a hash.
local function job_fields(job, ...)
  local ok, values = pcall(redis.call, 'HMGET', job, ...)
  if ok then
    return values
  end
  return nil, redis.call('TYPE', job)['ok']
end

-- Emit an event: append it to the queue's bounded stream (catch-up) and publish it on the
-- queue's events channel (low latency). ``extra`` is a JSON fragment: ',"result":{...}'.
-- Returns the event id (the stream entry id).
local function emit(base, queue, etype, id, attempt, now, extra)
  if not events_maxlen then
    -- a value that is not a count of at least 1 (something else wrote it) means the default
    local value = redis.call('HGET', base .. 'config', 'events_maxlen')
    events_maxlen = DEFAULT_EVENTS_MAXLEN
    if value and string.match(value, '^%d+$') and #value < 16 and tonumber(value) >= 1 then
      events_maxlen = tonumber(value)
    end
  end
  -- seq numbers a queue's events 1, 2, 3...: a reader that sees one skipped knows the
  -- stream was trimmed past it
  local seq = redis.call('HINCRBY', base .. 'config', 'seq', 1)
  local body = '"type":"' .. etype .. '","queue":"' .. queue .. '","id":"' .. id ..
    '","attempt":' .. int(attempt) .. ',"ts":' .. now .. ',"seq":' .. seq .. extra
  local eid = redis.call('XADD', base .. 'events', 'MAXLEN', '~', events_maxlen, '*',
    'e', '{"v":1,' .. body .. '}')
  redis.call(PUBLISH, base .. 'events', '{"v":1,"event_id":"' .. eid .. '",' .. body .. '}')
  return eid
end

-- The terminal outcome of a job: the value of its result key and of its done message.
-- Ids and queue names are validated to [A-Za-z0-9._:-], so they need no JSON escaping.
local function outcome(queue, id, status, attempt, now, field, json)
  return '{"v":1,"queue":"' .. queue .. '","id":"' .. id .. '","status":"' .. status ..
    '","attempt":' .. int(attempt) .. ',"finished_at":' .. now .. ',"' .. field .. '":' .. json .. '}'
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
  ttl = int(ttl, DEFAULT_RESULT_TTL)
  if ttl < 1 or ttl > MAX_RESULT_TTL then
    ttl = DEFAULT_RESULT_TTL
  end
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
  count(base, status)
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
-- A wake list something else overwrote is left alone: idle workers then find new jobs at
-- their next look (``tick``), and the script needs no TYPE check of it before writing.
local function wake(base)
  local ok, n = pcall(redis.call, 'LLEN', base .. 'wake')
  if ok and n == 0 then
    redis.call('LPUSH', base .. 'wake', '1')
  end
end

-- Set when a script call finds no rotation: claim.lua, the one caller of pop_pending, pushes
-- no id, so it stays so for the rest of the call, and a queue that never uses groups pays
-- one EXISTS per claim.
local no_groups = false

-- The next job id waiting in the pending list ``name`` (as in PENDING), or nil.
-- At the normal level, while groups have jobs waiting, the rotation decides: its head
-- member gives its oldest job and moves to the tail, or leaves the rotation when it has
-- none left; the ungrouped member gives the oldest job of pending:normal. So each group,
-- and the jobs without a group, get one job per turn, whatever their backlog.
local function pop_pending(base, name, now)
  if name ~= 'pending:normal' or no_groups then
    return redis.call('RPOP', base .. name)
  end
  local rotation = base .. 'groups'
  if redis.call('EXISTS', rotation) == 0 then
    no_groups = true
    return redis.call('RPOP', base .. name)
  end
  -- every step gives a job or shortens the rotation, but the ungrouped member's when no
  -- job is without a group, and a group follows it: the bound is for a rotation something
  -- else rewrote
  for _ = 1, 2 * redis.call('LLEN', rotation) + 1 do
    local member = redis.call('LMOVE', rotation, rotation, 'RIGHT', 'LEFT')
    if not member then
      no_groups = true
      return redis.call('RPOP', base .. name)
    end
    if member == UNGROUPED then
      local id = redis.call('RPOP', base .. name)
      if id then return id end
      if redis.call('LLEN', rotation) <= 1 then redis.call('DEL', rotation) end
    else
      local list = base .. 'pending:g:' .. member
      local ok, id = pcall(redis.call, 'RPOP', list)
      if not ok then
        quarantine(base, 'pending:g:' .. member, list .. ' holds a ' ..
          redis.call('TYPE', list)['ok'] .. ', not a list of job ids', now)
      end
      if not ok or redis.call('LLEN', list) == 0 then
        -- nothing more waits in the group: it leaves the rotation (LMOVE put it at the
        -- left end), and the rotation goes with its last group
        redis.call('LPOP', rotation)
        if redis.call('LLEN', rotation) <= 1 then redis.call('DEL', rotation) end
      end
      if ok and id then
        redis.call('HINCRBY', base .. 'config', 'grouped', -1)
        -- more groups wait: pass the wake-up on to another idle worker
        if redis.call('EXISTS', rotation) == 1 then wake(base) end
        return id
      end
    end
  end
  return nil
end

-- A queue's rate limit (docs/rate-limits.md): at most ``jobs`` starts in any window of
-- ``per`` ms, whatever the number of workers. Kept as a sliding log: the ZSET ``starts``
-- holds one entry per start of the last window, scored by its time (ms), so it never holds
-- more than ``jobs`` entries. (A token bucket or a fixed window would let up to twice as
-- many starts into some window of that length.)
local MAX_RATE_JOBS, MAX_RATE_PER_MS = 100000, 86400000  -- rates.py has the same numbers

-- The limit and the window as of ``now``: nil when the queue has none, else {jobs, per,
-- used}; or nil and an error reply when ``config`` field ``rate_limit`` is not
-- "<jobs>/<per ms>" (a limit that cannot be read must not be read as "no limit") or the
-- log is not a ZSET. Trims the log of the starts that left the window.
local function rate_window(base, now)
  local value = redis.call('HGET', base .. 'config', 'rate_limit')
  if not value then
    return nil
  end
  local jobs, per = string.match(value, '^(%d+)/(%d+)$')
  jobs, per = tonumber(jobs), tonumber(per)
  if #value > 24 or not jobs or jobs < 1 or jobs > MAX_RATE_JOBS or per < 1 or
      per > MAX_RATE_PER_MS then
    return nil, redis.error_reply('CORRUPT ' .. base .. 'config field rate_limit holds "' ..
      printable(value, 40) .. '", not <jobs>/<ms>')
  end
  local bad = check_keys(base, {'starts'})
  if bad then
    return nil, bad
  end
  redis.call('ZREMRANGEBYSCORE', base .. 'starts', '-inf', now - per)
  return {jobs = jobs, per = per, used = redis.call('ZCARD', base .. 'starts')}
end

-- Ms until the window has room for a start again (at least 1): when its oldest start
-- leaves it.
local function rate_wait(base, rate, now)
  local oldest = redis.call('ZRANGE', base .. 'starts', 0, 0, 'WITHSCORES')[2]
  return math.max(1, (tonumber(oldest) or now) + rate.per - now)
end

-- Log the starts of the claimed jobs (``out``: ``stride`` values per job, id first, its
-- lease token second). Returns the ms until the next start is allowed when the window is
-- now full, else 0.
local function rate_record(base, rate, out, stride, now)
  for i = 1, #out, stride do
    redis.call('ZADD', base .. 'starts', now, out[i] .. ':' .. out[i + 1])
    rate.used = rate.used + 1
  end
  if rate.used < rate.jobs then
    return 0
  end
  return rate_wait(base, rate, now)
end
