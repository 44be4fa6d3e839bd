-- commit.lua: the one script every write of Passerelle goes through (txn.c).
--
-- It applies a transaction all or nothing: version guards, record puts and
-- deletes, index changes, its events, and the idempotency record, so
-- that a state change, its event and the reply to its request are written
-- together.
-- Redis runs a script without interleaving other clients' commands, and
-- every check happens before the first write, so a refusal leaves nothing
-- behind.
--
-- KEYS, in this order (counts in ARGV[1..11]):
--   [idempotency key]          if ARGV[1] == "1"
--   guard keys                 ARGV[4] of them
--   put keys                   ARGV[5]
--   delete keys                ARGV[11]
--   index-add sorted sets      ARGV[6]
--   index-remove sorted sets   ARGV[7]
--   counter hashes             ARGV[10]
--   stream keys                ARGV[8] of them, one per event
-- ARGV:
--   1 "1" if there is an idempotency key, else "0"
--   2 request fingerprint ("" for none)
--   3 idempotency record lifetime, seconds ("0": no expiry)
--   4 guard count G       5 put count P
--   6 index-add count A   7 index-remove count R
--   8 event count E (usually 0 or 1)
--   9 the reply to store under the idempotency key
--   10 counter count C
--   11 delete count D
--   then G versions (decimal; "0" = must not exist),
--   then P pairs: version, packed protobuf,
--   then D versions (decimal, at least 1: the version each deleted record
--        must be at),
--   then A members, then R members,
--   then C pairs: hash field, integer delta (HINCRBY),
--   then E pairs: event type, packed Event.
-- A put of version n is also guarded at n - 1, a delete at its version
-- (both checked with the guards).
--
-- Returns an array whose first element says what happened:
--   {"COMMITTED", the first event's stream entry id or ""}
--   {"DUPLICATE", stored reply}   key already used by the same request
--   {"KEY_REUSED"}                key already used by another request
--   {"STALE", key}                a guard failed; nothing was written

local has_idem = ARGV[1] == "1"
local fingerprint = ARGV[2]
local ttl = tonumber(ARGV[3])
local guard_count = tonumber(ARGV[4])
local put_count = tonumber(ARGV[5])
local add_count = tonumber(ARGV[6])
local remove_count = tonumber(ARGV[7])
local event_count = tonumber(ARGV[8])
local reply = ARGV[9]
local counter_count = tonumber(ARGV[10])
local delete_count = tonumber(ARGV[11])

local k = 1
local a = 12

local idem_key = nil
if has_idem then
  idem_key = KEYS[k]
  k = k + 1
  local stored = redis.call("HMGET", idem_key, "req", "reply")
  if stored[1] or stored[2] then
    if (stored[1] or "") == fingerprint then
      return {"DUPLICATE", stored[2] or ""}
    end
    return {"KEY_REUSED"}
  end
end

-- A record's version; 0 when the record is absent.
local function version_of(key)
  return tonumber(redis.call("HGET", key, "v") or "0")
end

for i = 1, guard_count do
  local key = KEYS[k]
  if version_of(key) ~= tonumber(ARGV[a]) then
    return {"STALE", key}
  end
  k = k + 1
  a = a + 1
end

local put_first_key, put_first_arg = k, a
for i = 1, put_count do
  local key = KEYS[k]
  if version_of(key) ~= tonumber(ARGV[a]) - 1 then
    return {"STALE", key}
  end
  k = k + 1
  a = a + 2
end

local delete_first_key, delete_first_arg = k, a
for i = 1, delete_count do
  local key = KEYS[k]
  if version_of(key) ~= tonumber(ARGV[a]) then
    return {"STALE", key}
  end
  k = k + 1
  a = a + 1
end

-- Every check passed: from here on, only writes.
k, a = put_first_key, put_first_arg
for i = 1, put_count do
  redis.call("HSET", KEYS[k], "v", ARGV[a], "pb", ARGV[a + 1])
  k = k + 1
  a = a + 2
end
k, a = delete_first_key, delete_first_arg
for i = 1, delete_count do
  redis.call("DEL", KEYS[k])
  k = k + 1
  a = a + 1
end
for i = 1, add_count do
  redis.call("ZADD", KEYS[k], 0, ARGV[a])
  k = k + 1
  a = a + 1
end
for i = 1, remove_count do
  redis.call("ZREM", KEYS[k], ARGV[a])
  k = k + 1
  a = a + 1
end

for i = 1, counter_count do
  redis.call("HINCRBY", KEYS[k], ARGV[a], ARGV[a + 1])
  k = k + 1
  a = a + 2
end

local position = ""
for i = 1, event_count do
  local added = redis.call("XADD", KEYS[k], "*", "type", ARGV[a], "event", ARGV[a + 1])
  if i == 1 then
    position = added
  end
  k = k + 1
  a = a + 2
end

if has_idem then
  redis.call("HSET", idem_key, "req", fingerprint, "reply", reply)
  if ttl > 0 then
    redis.call("EXPIRE", idem_key, ttl)
  end
end

return {"COMMITTED", position}
