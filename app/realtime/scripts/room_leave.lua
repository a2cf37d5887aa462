-- Leave a room: remove the connection and, once no live member carries its name, release the
-- owner's claim on it, in one atomic step (a join cannot slip in between).
-- KEYS[1] names, KEYS[2] members (as room_join.lua)
-- ARGV[1] connection id, ARGV[2] the name's key, ARGV[3] owner, ARGV[4] oldest live `seen`.
-- Returns 1 when the name has left the room entirely, 0 when another connection still has it.
redis.call('HDEL', KEYS[2], ARGV[1])
for _, text in ipairs(redis.call('HVALS', KEYS[2])) do
  local member = cjson.decode(text)
  if member['key'] == ARGV[2] and tonumber(member['seen']) >= tonumber(ARGV[4]) then
    return 0
  end
end
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[3] then
  redis.call('HDEL', KEYS[1], ARGV[2])
end
return 1
