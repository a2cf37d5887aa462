-- Join a room: claim the member's name and add the member, in one atomic step.
-- KEYS[1] names (hash: name key -> owner), KEYS[2] members (hash: connection id -> member JSON)
-- ARGV[1] the name's key (its skeleton: look-alike names are one name), ARGV[2] owner,
-- ARGV[3] connection id, ARGV[4] member JSON, ARGV[5] oldest live `seen` (epoch seconds),
-- ARGV[6] TTL of both hashes (seconds).
-- A name held by another owner is taken over only when no live member carries it.
-- Returns 1 when joined, 0 when the name is taken.
local holder = redis.call('HGET', KEYS[1], ARGV[1])
if holder and holder ~= ARGV[2] then
  for _, text in ipairs(redis.call('HVALS', KEYS[2])) do
    local member = cjson.decode(text)
    if member['key'] == ARGV[1] and tonumber(member['seen']) >= tonumber(ARGV[5]) then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
