-- read.lua: the counters one query needs, read in one round trip (query.c).
--
-- The generation is resolved here, in the same script as the reads, so
-- that every figure of an answer comes from one key space even while a
-- rebuild switches indicators:current: a query never adds a counter of
-- the old generation to one of the new.
--
-- KEYS:
--   1 indicators:current (absent: generation 0)
-- ARGV: pairs (counter key without its generation prefix, field), e.g.
--   "c:conventions.signed:CT2:2026-04", "level=LOC2". The field "" asks
--   for the whole hash: a distribution, or every axis value at once.
-- Returns { generation, answer of pair 1, answer of pair 2, ... }: for a
--   field, its value or nil when absent; for "", the hash as a flat
--   field/value array (empty when absent).

local generation = redis.call("GET", KEYS[1]) or "0"
if not string.match(generation, "^%d+$") then
  return redis.error_reply("indicators:current is not a generation: " .. generation)
end
local prefix = "indicators:g" .. generation .. ":"

local out = { generation }
local n = 1
for i = 1, #ARGV - 1, 2 do
  local key = prefix .. ARGV[i]
  local field = ARGV[i + 1]
  n = n + 1
  if field == "" then
    out[n] = redis.call("HGETALL", key)
  else
    -- false (absent) becomes a nil answer; it still holds its place.
    out[n] = redis.call("HGET", key, field)
  end
end
return out
