-- Takes the queues whose head is due (deliver.h): each member taken is
-- pushed to the end of its lease, so that it comes back only if no outcome
-- is recorded in time. Paused and disabled subscriptions are passed over,
-- and no subscription gets more than the room the worker has for it; what
-- is passed over stays due.
--
-- KEYS: 1 due set, 2 inactive subscriptions, 3 the subscriptions' change
--       counter (hash notifications:meta, field "subs")
-- ARGV: 1 now (ms), 2 lease (ms), 3 most to take, 4 most to look at,
--       5 room of a subscription not listed, then pairs: subscription, room
-- Returns: { earliest score left in the due set or -1,
--            the subscriptions' change counter (0 if never changed),
--            member, head delivery id, packed delivery, ... }
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
local default_room = tonumber(ARGV[5])
local room = {}
for i = 6, #ARGV - 1, 2 do
  room[ARGV[i]] = tonumber(ARGV[i + 1])
end
local out = { -1, tonumber(redis.call("HGET", KEYS[3], "subs") or "0") }
local taken = 0
if most > 0 then
  local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[4]))
  for _, member in ipairs(due) do
    local sub, subject = string.match(member, "^(%S+) (.+)$")
    if not sub then
      redis.call("ZREM", KEYS[1], member)
    elseif (room[sub] or default_room) > 0 and not redis.call("ZSCORE", KEYS[2], sub) then
      local queue = "notifications:q:" .. sub .. ":" .. subject
      local head = redis.call("LINDEX", queue, 0)
      if not head then
        redis.call("ZREM", KEYS[1], member)
      else
        local packed = redis.call("GET", "notifications:dlv:" .. head .. ":" .. sub)
        if not packed then
          -- A head without its delivery: drop it, the next one is due.
          redis.call("LPOP", queue)
        else
          redis.call("ZADD", KEYS[1], now + lease, member)
          room[sub] = (room[sub] or default_room) - 1
          out[#out + 1] = member
          out[#out + 1] = head
          out[#out + 1] = packed
          taken = taken + 1
          if taken >= most then
            break
          end
        end
      end
    end
  end
end
local first = redis.call("ZRANGE", KEYS[1], 0, 0, "WITHSCORES")
if first[2] then
  out[1] = tonumber(first[2])
end
return out
