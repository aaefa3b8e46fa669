-- Create a listener's consumer group at the end of a queue's event stream, recording how
-- many entries the stream has had, so the server can count later what the group missed
-- if the stream is trimmed past it. KEYS[1] events stream; ARGV[1] group, ARGV[2] where
-- it starts: '$' (the newest event) or '0' (the oldest).
-- Returns 1 if created, 0 if the group already existed.
local stream, group = KEYS[1], ARGV[1]
local start = ARGV[2] or '$'
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', stream, group, start, 'MKSTREAM')
if not ok then
  -- the group exists (BUSYGROUP); any other error (an ACL refusal, a key of the wrong
  -- type) is the caller's to see
  local message = type(err) == 'table' and err.err or tostring(err)
  if string.find(message, 'BUSYGROUP', 1, true) then return 0 end
  error(err, 0)
end
if start ~= '$' then return 1 end
local info = redis.call('XINFO', 'STREAM', stream)
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then
    redis.call('XGROUP', 'SETID', stream, group, '$', 'ENTRIESREAD', info[i + 1])
  end
end
return 1
