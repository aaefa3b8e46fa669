-- A job's state as of one point of its queue's event stream, read in one step, so that a
-- new subscriber gets the state and then exactly the events after it.
-- KEYS: job hash, result key, events stream.
-- Returns {job record as a flat array, result value or false, newest event id or "0-0"}.
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local position = '0-0'
if newest[1] then
  position = newest[1][1]
end
return {redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]), position}
