-- The delivery worker's one script (deliver.h): records what became of the
-- deliveries of a pass, then takes the next ones that are due, in one call,
-- so that a pass of the worker costs one round trip and one fsync. The
-- request handlers call it with one outcome and no claim (a replay).
--
-- Keys it builds from its arguments (notify.h):
--   notifications:q:<sub>:<subject>   the subject's queue (delivery ids)
--   notifications:dlv:<id>:<sub>      a Delivery (packed)
--   notifications:due:<sub>           zset subject -> when its head is due
--   notifications:dead:<sub>, notifications:attempts:<sub>,
--   notifications:health:<sub>, notifications:latency:<type>:<territory|all>
--
-- KEYS: 1 the due subscriptions (zset sub -> no later than its first due
--       subject; every ZADD to a due set lowers it, a claim sets it exact),
--       2 inactive subscriptions, 3 the subscriptions' change counter (hash
--       notifications:meta, field "subs"), 4 the due set of versions before
--       this one (zset "<sub> <subject>" -> ms), moved over when found
-- ARGV: 1 now (ms), 2 attempts kept, 3 outcome count N, then per outcome
--       11 fields:
--         op: delivered | retry | dead | drop | replay | release
--         subscription, subject, delivery id, event type, territory,
--         next attempt (ms, retry), packed delivery (retry, dead, replay;
--         "" otherwise), packed attempt ("" for none), latency bucket
--         ("" for none), latency (ms)
--       then the claim: lease (ms), most to take (0: no claim), room of a
--       subscription not listed, then pairs: subscription, room
-- Returns { earliest time (ms) something is due that this worker could
--           take, or -1; the subscriptions' change counter (0 if never
--           changed); N; per outcome: 1 if applied (0 if the delivery was
--           no longer at its queue's head: another worker recorded it
--           first), failing since (ms, 0 if not failing); then per delivery
--           taken: member ("<sub> <subject>"), head delivery id, packed
--           delivery }
local index, inactive_key, meta, legacy = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[1])
local kept = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

local function due_key(sub)
  return "notifications:due:" .. sub
end

-- Every subject made due (or due earlier) goes through here, so that the
-- index never says later than the truth.
local function make_due(sub, subject, at)
  redis.call("ZADD", due_key(sub), at, subject)
  redis.call("ZADD", index, "LT", at, sub)
end

local function undue(sub, subject)
  local key = due_key(sub)
  redis.call("ZREM", key, subject)
  if redis.call("EXISTS", key) == 0 then
    redis.call("ZREM", index, sub)
  end
end

-- The due set before per-subscription due sets: moved over, a thousand
-- members a call, so that a large backlog does not hold Redis at once.
if redis.call("EXISTS", legacy) == 1 then
  local old = redis.call("ZPOPMIN", legacy, 1000)
  for i = 1, #old, 2 do
    local sub, subject = string.match(old[i], "^(%S+) (.+)$")
    if sub then
      make_due(sub, subject, tonumber(old[i + 1]))
    end
  end
end

local out = { -1, tonumber(redis.call("HGET", meta, "subs") or "0"), n }

-- Outcomes. What a pass repeats for one key is written once at the end:
-- the latency buckets summed, a subscription's health written once per
-- run of successes, the attempts logs trimmed once.
local latency = {}    -- key -> { buckets = {b -> count}, count, max }
local healthy = {}    -- sub -> true once last_success is written in this pass
local trim = {}       -- attempts log -> true
local function count_latency(key, bucket, ms)
  local l = latency[key]
  if not l then
    l = { buckets = {}, count = 0, max = 0 }
    latency[key] = l
  end
  l.buckets[bucket] = (l.buckets[bucket] or 0) + 1
  l.count = l.count + 1
  if ms > l.max then
    l.max = ms
  end
end

for i = 0, n - 1 do
  local a = 4 + 11 * i
  local op, sub, subject, id = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local etype, territory = ARGV[a + 4], ARGV[a + 5]
  local next_ms, packed, attempt = tonumber(ARGV[a + 6]), ARGV[a + 7], ARGV[a + 8]
  local bucket, ms = ARGV[a + 9], tonumber(ARGV[a + 10])
  local queue = "notifications:q:" .. sub .. ":" .. subject
  local dlv = "notifications:dlv:" .. id .. ":" .. sub
  local dead = "notifications:dead:" .. sub
  local health = "notifications:health:" .. sub
  local applied, failing = 1, 0

  if op == "replay" then
    if redis.call("ZREM", dead, id) == 0 then
      applied = 0
    else
      redis.call("SET", dlv, packed)
      if redis.call("RPUSH", queue, id) == 1 then
        make_due(sub, subject, now)
      end
    end
  elseif redis.call("LINDEX", queue, 0) ~= id then
    applied = 0
  elseif op == "release" then
    -- Taken but not sent (no room after all): due again, no attempt counted.
    make_due(sub, subject, now)
  else
    if attempt ~= "" then
      local log = "notifications:attempts:" .. sub
      redis.call("XADD", log, "*", "pb", attempt)
      trim[log] = true
    end
    if op == "delivered" then
      if not healthy[sub] then
        redis.call("HSET", health, "last_success", now)
        redis.call("HDEL", health, "failing_since")
        healthy[sub] = true
      end
      if bucket ~= "" then
        count_latency("notifications:latency:" .. etype .. ":all", bucket, ms)
        if territory ~= "" then
          count_latency("notifications:latency:" .. etype .. ":" .. territory, bucket, ms)
        end
      end
    elseif op == "retry" or op == "dead" then
      healthy[sub] = nil
      redis.call("HSET", health, "last_failure", now)
      redis.call("HSETNX", health, "failing_since", now)
      failing = tonumber(redis.call("HGET", health, "failing_since"))
    end
    if op == "retry" then
      redis.call("SET", dlv, packed)
      make_due(sub, subject, next_ms)
    else
      -- delivered, dead, drop: the head leaves its queue, the next is due now.
      redis.call("LPOP", queue)
      if op == "dead" then
        redis.call("SET", dlv, packed)
        redis.call("ZADD", dead, now, id)
      else
        redis.call("DEL", dlv)
      end
      if redis.call("EXISTS", queue) == 1 then
        make_due(sub, subject, now)
      else
        undue(sub, subject)
      end
    end
  end
  out[#out + 1] = applied
  out[#out + 1] = failing
end

for log in pairs(trim) do
  redis.call("XTRIM", log, "MAXLEN", "~", kept)
end
for key, l in pairs(latency) do
  for bucket, count in pairs(l.buckets) do
    redis.call("HINCRBY", key, bucket, count)
  end
  redis.call("HINCRBY", key, "count", l.count)
  if l.max > tonumber(redis.call("HGET", key, "max") or "0") then
    redis.call("HSET", key, "max", l.max)
  end
end

-- The claim: the queues whose head is due, taken by subscription, the
-- subscriptions due longest first. Each subject taken is pushed to the end
-- of its lease, so that it comes back only if no outcome is recorded in
-- time. Paused and disabled subscriptions are passed over, and none gets
-- more than the room the worker has for it; what is passed over stays due.
local c = 4 + 11 * n
local lease, most, default_room = tonumber(ARGV[c]), tonumber(ARGV[c + 1]), tonumber(ARGV[c + 2])
if most > 0 then
  local room = {}
  for i = c + 3, #ARGV - 1, 2 do
    room[ARGV[i]] = tonumber(ARGV[i + 1])
  end
  local taken = 0
  -- One entry per subscription with something due: as many as there are
  -- subscriptions with work waiting, not as many as deliveries.
  local subs = redis.call("ZRANGEBYSCORE", index, "-inf", now)
  for _, sub in ipairs(subs) do
    local left = room[sub] or default_room
    if taken >= most then
      out[1] = now -- more is due than this call could take
      break
    end
    if redis.call("ZSCORE", inactive_key, sub) then
      -- Paused or disabled: out of the index, so that no claim looks at
      -- it again; its next delivery queued, or its resume, puts it back.
      redis.call("ZREM", index, sub)
    elseif left > 0 then
      local key = due_key(sub)
      local want = math.min(left, most - taken)
      local due = redis.call("ZRANGEBYSCORE", key, "-inf", now, "LIMIT", 0, want)
      for _, subject in ipairs(due) do
        local queue = "notifications:q:" .. sub .. ":" .. subject
        local head = redis.call("LINDEX", queue, 0)
        if not head then
          redis.call("ZREM", key, subject)
        else
          local packed = redis.call("GET", "notifications:dlv:" .. head .. ":" .. sub)
          if not packed then
            -- A head without its delivery: drop it, the next one is due.
            redis.call("LPOP", queue)
          else
            redis.call("ZADD", key, now + lease, subject)
            out[#out + 1] = sub .. " " .. subject
            out[#out + 1] = head
            out[#out + 1] = packed
            taken = taken + 1
          end
        end
      end
      -- The index made exact for this subscription.
      local first = redis.call("ZRANGE", key, 0, 0, "WITHSCORES")
      if first[2] then
        redis.call("ZADD", index, tonumber(first[2]), sub)
        if want < left and tonumber(first[2]) <= now then
          out[1] = now -- it has more due, and room, than this call took
        end
      else
        redis.call("ZREM", index, sub)
      end
    end
  end
  -- When the next subscription becomes due. One due now that was passed
  -- over (paused, or no room) is not counted: a resume changes the
  -- subscriptions, and a transfer that ends makes room, and either makes
  -- the worker claim again.
  if out[1] < 0 then
    local later = redis.call("ZRANGEBYSCORE", index, "(" .. now, "+inf", "WITHSCORES", "LIMIT", 0, 1)
    if later[2] then
      out[1] = tonumber(later[2])
    end
  end
end
return out
