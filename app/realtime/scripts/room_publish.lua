-- Publish a message to a room: give it the next offset of the room's log, append it, and send
-- it on the room's hub channel, in one atomic step: no offset is published twice or skipped,
-- and the channel carries the room's messages in offset order.
-- A message with a sender's id (ARGV[7]) that the log still holds is not published again: the
-- logged one is returned, marked a duplicate (a resend after a lost acknowledgement).
-- KEYS[1] meta (hash: epoch, top), KEYS[2] log (stream, entry ids 0-<offset>), KEYS[3] the
-- room's sharded channel (same slot), KEYS[4] sent (sorted set: sender's id -> offset).
-- ARGV[1] the message (JSON object, without offset and epoch), ARGV[2] a new epoch, used when
-- the room has none or its log was lost, ARGV[3] entries kept (0: no log), ARGV[4] TTL of
-- the log and its meta after this message (seconds), ARGV[5] the room's name, ARGV[6] the W3C
-- traceparent for the envelope ('' for none: app.tracing), ARGV[7] the sender's id of the
-- message ('' for none).
-- Returns {epoch, offset, the message as published (JSON), 1 if it was a duplicate else 0}.
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local top = tonumber(redis.call('HGET', KEYS[1], 'top') or '0')
local keep = tonumber(ARGV[3])
if (not epoch) or (keep > 0 and top > 0 and redis.call('EXISTS', KEYS[2]) == 0) then
  -- A new room, or one whose log is gone (expired, flushed, evicted): a new epoch.
  epoch = ARGV[2]
  top = 0
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local sent_id = ARGV[7]
if sent_id ~= '' and keep > 0 then
  local seen = redis.call('ZSCORE', KEYS[4], sent_id)
  if seen then
    local entry = redis.call('XRANGE', KEYS[2], '0-' .. seen, '0-' .. seen)
    if entry[1] then
      return {epoch, tonumber(seen), entry[1][2][2], 1}
    end
  end
end
top = top + 1
redis.call('HSET', KEYS[1], 'top', top)
local message = cjson.decode(ARGV[1])
message['offset'] = top
message['epoch'] = epoch
local text = cjson.encode(message)
if keep > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', keep, '0-' .. top, 'm', text)
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  if sent_id ~= '' then
    redis.call('ZADD', KEYS[4], top, sent_id)
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', top - keep)
    redis.call('EXPIRE', KEYS[4], ARGV[4])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
local envelope = {to = {kind = 'room', room = ARGV[5]}, skip = cjson.null, frame = message}
if ARGV[6] ~= '' then
  envelope['trace'] = ARGV[6]
end
envelope = cjson.encode(envelope)
redis.call('SPUBLISH', KEYS[3], envelope)
return {epoch, top, text, 0}
