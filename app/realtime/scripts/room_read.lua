-- Read a room's log for a (re)joining client: every message after its position when the
-- position's epoch is the room's and no message after it has left the log (recovered), else
-- the latest ones.
-- KEYS[1] meta, KEYS[2] log (as room_publish.lua)
-- ARGV[1] the client's epoch ('' when it has none), ARGV[2] its offset, ARGV[3] how many of
-- the latest messages to return when it cannot recover.
-- Returns {epoch ('' for a room without messages), top offset, recovered (1/0), messages},
-- messages as JSON texts, oldest first.
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local function texts(entries)
  local out = {}
  for index, entry in ipairs(entries) do
    out[index] = entry[2][2]
  end
  return out
end
if ARGV[1] ~= '' and ARGV[1] == epoch then
  local after = tonumber(ARGV[2])
  if after == top then
    return {epoch, top, 1, {}}
  end
  if after < top then
    local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
    if first and tonumber(string.match(first[1], '%-(%d+)$')) <= after + 1 then
      return {epoch, top, 1, texts(redis.call('XRANGE', KEYS[2], '0-' .. (after + 1), '+'))}
    end
  end
end
local latest = texts(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', tonumber(ARGV[3])))
local oldest_first = {}
for index = #latest, 1, -1 do
  oldest_first[#oldest_first + 1] = latest[index]
end
return {epoch, top, 0, oldest_first}
