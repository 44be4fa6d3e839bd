-- One event's fan-out, all or nothing (fanout.h): a delivery per matching
-- subscription, queued behind the same subject's, the event in the partner
-- feed, and the event's done marker.
--
-- KEYS: 1 done marker, 2 the due subscriptions (deliver.lua), 3 feed
--       stream, 4 the subscriptions' change counter (hash
--       notifications:meta, field "subs"), then per target: delivery key,
--       queue key, the subscription's due set
-- ARGV: 1 done marker lifetime (s), 2 now (ms), 3 "1" to feed the event,
--       4 event type, 5 packed event, 6 origin ("<stream> <entry id>"),
--       7 target count, 8 the change counter the targets were chosen with,
--       9 subject, 10 delivery id, then per target: subscription, packed
--       delivery
-- Returns the number of deliveries queued (0 if the event was done), or -1
-- if the subscriptions changed since the caller chose the targets: nothing
-- is written, the caller reloads them and chooses again.
if redis.call("EXISTS", KEYS[1]) == 1 then
  return 0
end
if (redis.call("HGET", KEYS[4], "subs") or "0") ~= ARGV[8] then
  return -1
end
local now = tonumber(ARGV[2])
local n = tonumber(ARGV[7])
local subject, id = ARGV[9], ARGV[10]
local queued = 0
for i = 0, n - 1 do
  local dlv_key, queue_key, due_key = KEYS[5 + 3 * i], KEYS[6 + 3 * i], KEYS[7 + 3 * i]
  local sub, packed = ARGV[11 + 2 * i], ARGV[12 + 2 * i]
  -- Keyed by event and subscription: a repeat cannot queue twice.
  if redis.call("SET", dlv_key, packed, "NX") then
    if redis.call("RPUSH", queue_key, id) == 1 then
      redis.call("ZADD", due_key, now, subject)
      redis.call("ZADD", KEYS[2], "LT", now, sub)
    end
    queued = queued + 1
  end
end
if ARGV[3] == "1" then
  redis.call("XADD", KEYS[3], "*", "type", ARGV[4], "event", ARGV[5], "origin", ARGV[6])
end
redis.call("SET", KEYS[1], "1", "EX", tonumber(ARGV[1]))
return queued
