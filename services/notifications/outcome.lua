-- Records what became of a delivery (deliver.h), or puts a dead one back.
--
-- KEYS: 1 due set, 2 the subject's queue, 3 the delivery, 4 dead letters,
--       5 attempts log, 6 health, 7 latency (type, territory), 8 latency
--       (type, all)
-- ARGV: 1 op: delivered | retry | dead | drop | replay | release
--       2 due member ("<sub> <subject>"), 3 delivery id, 4 now (ms),
--       5 next attempt (ms, retry), 6 packed delivery (retry, dead, replay),
--       7 attempts kept, 8 packed attempt ("" for none),
--       9 latency bucket ("" for none), 10 latency (ms)
-- Returns { 1 if applied, 0 if the delivery was no longer there (another
--           worker recorded it first), failing since (ms, 0 if not failing) }
local op = ARGV[1]
local member, id, now = ARGV[2], ARGV[3], tonumber(ARGV[4])

if op == "replay" then
  if redis.call("ZREM", KEYS[4], id) == 0 then
    return { 0, 0 }
  end
  redis.call("SET", KEYS[3], ARGV[6])
  if redis.call("RPUSH", KEYS[2], id) == 1 then
    redis.call("ZADD", KEYS[1], now, member)
  end
  return { 1, 0 }
end

if redis.call("LINDEX", KEYS[2], 0) ~= id then
  return { 0, 0 }
end
if op == "release" then
  -- Taken but not sent (no room after all): due again, no attempt counted.
  redis.call("ZADD", KEYS[1], now, member)
  return { 1, 0 }
end
if ARGV[8] ~= "" then
  redis.call("XADD", KEYS[5], "MAXLEN", "~", tonumber(ARGV[7]), "*", "pb", ARGV[8])
end

local failing = 0
if op == "delivered" then
  redis.call("HSET", KEYS[6], "last_success", now)
  redis.call("HDEL", KEYS[6], "failing_since")
  if ARGV[9] ~= "" then
    local ms = tonumber(ARGV[10])
    for _, key in ipairs({ KEYS[7], KEYS[8] }) do
      redis.call("HINCRBY", key, ARGV[9], 1)
      redis.call("HINCRBY", key, "count", 1)
      local max = tonumber(redis.call("HGET", key, "max") or "0")
      if ms > max then
        redis.call("HSET", key, "max", ms)
      end
    end
  end
elseif op == "retry" or op == "dead" then
  redis.call("HSET", KEYS[6], "last_failure", now)
  redis.call("HSETNX", KEYS[6], "failing_since", now)
  failing = tonumber(redis.call("HGET", KEYS[6], "failing_since"))
end

if op == "retry" then
  redis.call("SET", KEYS[3], ARGV[6])
  redis.call("ZADD", KEYS[1], tonumber(ARGV[5]), member)
  return { 1, failing }
end

-- delivered, dead, drop: the head leaves its queue, the next is due now.
redis.call("LPOP", KEYS[2])
if op == "dead" then
  redis.call("SET", KEYS[3], ARGV[6])
  redis.call("ZADD", KEYS[4], now, id)
else
  redis.call("DEL", KEYS[3])
end
if redis.call("LLEN", KEYS[2]) > 0 then
  redis.call("ZADD", KEYS[1], now, member)
else
  redis.call("ZREM", KEYS[1], member)
end
return { 1, failing }
