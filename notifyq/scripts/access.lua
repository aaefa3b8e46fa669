-- Which commands may the user running this script not run? Each ARGV is one command as the
-- role would send it, words separated by spaces (queue names and job ids hold none): the
-- command, and the key or channel it would touch. Returns the positions (from 1) of those
-- the server's ACL rules refuse; none on a server that cannot tell (before Redis 7).
if not redis.acl_check_cmd then return {} end
local refused = {}
for i = 1, #ARGV do
  local words = {}
  for word in string.gmatch(ARGV[i], '%S+') do
    words[#words + 1] = word
  end
  -- an error: the server does not know the command (older, or renamed): refused too
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(words))
  if not ok or not allowed then
    refused[#refused + 1] = i
  end
end
return refused
