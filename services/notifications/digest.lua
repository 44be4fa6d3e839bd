-- digest.lua: the territory digest's projection of one convention event
-- (digest.c), applied with the event's done marker in one script, so that
-- a crash between the effect and the XACK cannot apply an event twice.
--
-- The projection keeps, per territory, the units whose convention is
-- envisaged and not yet signed, and the changes not yet cut into a digest.
-- Events of one unit may be applied out of order (an entry left pending
-- comes back after later ones), so the list never trusts arrival order:
--   - a convention that reached any state other than ENVISAGED is marked
--     closed, and a late convention.envisaged of a closed convention is
--     ignored;
--   - a unit's listed convention is replaced only by a later one (ids are
--     ULIDs: they sort by creation), and removed only by an event of that
--     convention or a later one.
--
-- KEYS:
--   1 notifications:digest:envisaged:<CT>    hash unit id -> packed DigestUnit
--   2 notifications:digest:conventions:<CT>  hash unit id -> its listed convention id
--   3 notifications:digest:changes:<CT>      zset (stream ms) -> event id ":" packed DigestChange
--   4 the event's done marker
--   5 notifications:digest:closed:<convention id>
-- ARGV:
--   1 "add" (convention.envisaged, still ENVISAGED), "remove" (any other
--     state), "none" (a change that leaves the list alone), or "skip" (an
--     event the digest does not apply: only the done marker is set; every
--     key is the done marker then)
--   2 unit id   3 convention id
--   4 packed DigestUnit ("add"; else ignored)
--   5 the change's score (ms)   6 the change's member
--   7 lifetime of the done and closed markers, seconds
-- Returns "APPLIED", or "DONE" when the done marker was already there.

if redis.call("EXISTS", KEYS[4]) == 1 then
  return "DONE"
end
if ARGV[1] == "skip" then
  -- Not the digest's business: only marked done, like the others.
  redis.call("SET", KEYS[4], "1", "EX", tonumber(ARGV[7]))
  return "APPLIED"
end

local action = ARGV[1]
local unit_id = ARGV[2]
local convention_id = ARGV[3]
local ttl = tonumber(ARGV[7])

local listed = redis.call("HGET", KEYS[2], unit_id)

if action == "add" then
  local closed = redis.call("EXISTS", KEYS[5]) == 1
  if not closed and (not listed or listed <= convention_id) then
    redis.call("HSET", KEYS[1], unit_id, ARGV[4])
    redis.call("HSET", KEYS[2], unit_id, convention_id)
  end
elseif action == "remove" then
  redis.call("SET", KEYS[5], "1", "EX", ttl)
  if listed and listed <= convention_id then
    redis.call("HDEL", KEYS[1], unit_id)
    redis.call("HDEL", KEYS[2], unit_id)
  end
end

-- The member starts with the event id: two equal changes stay two, and a
-- redelivered event (done marker expired) adds nothing.
redis.call("ZADD", KEYS[3], ARGV[5], ARGV[6])
redis.call("SET", KEYS[4], "1", "EX", ttl)
return "APPLIED"
