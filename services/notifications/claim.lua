-- Takes the queues whose head is due (deliver.h): each member taken is
-- pushed to the end of its lease, so that it comes back only if no outcome
-- is recorded in time. Paused and disabled subscriptions, and those the
-- worker says are full, are passed over and left due.
--
-- KEYS: 1 due set, 2 inactive subscriptions
-- ARGV: 1 now (ms), 2 lease (ms), 3 most to take, 4 most to look at,
--       5... subscriptions that are full
-- Returns: { earliest score left in the due set or -1,
--            member, head delivery id, packed delivery, ... }
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local most = tonumber(ARGV[3])
local full = {}
for i = 5, #ARGV do
  full[ARGV[i]] = true
end
local out = { -1 }
local taken = 0
if most > 0 then
  local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[4]))
  for _, member in ipairs(due) do
    local sub, subject = string.match(member, "^(%S+) (.+)$")
    if not sub then
      redis.call("ZREM", KEYS[1], member)
    elseif not full[sub] and not redis.call("ZSCORE", KEYS[2], sub) then
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
