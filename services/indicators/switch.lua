-- The end of a rebuild (engine.h): makes its generation the one queries and
-- projectors use, if it counted every stream to its end and still holds
-- the lease; all or nothing.
--
-- KEYS: 1 indicators:current, 2 indicators:rebuild:lease,
--       3 indicators:g<N>:cursor, 4 indicators:rebuild (status),
--       then S streams
-- ARGV: 1 the holder (lease value), 2 the generation N,
--       3 finished_at, 4 events read,
--       then S cursors: the last entry id the rebuild counted per stream
--       ("0-0" for an empty stream)
-- Returns {1} when switched; {0, stream} when a stream has entries past
-- its cursor (the rebuild reads on); {-1} when the lease is no longer the
-- holder's; {-2, current} when the current generation is not older.
if redis.call("GET", KEYS[2]) ~= ARGV[1] then
  return {-1}
end
local current = tonumber(redis.call("GET", KEYS[1]) or "0")
if current >= tonumber(ARGV[2]) then
  return {-2, tostring(current)}
end
local n = #KEYS - 4
for s = 1, n do
  local last = redis.call("XREVRANGE", KEYS[4 + s], "+", "-", "COUNT", 1)
  local id = last[1] and last[1][1] or "0-0"
  if id ~= ARGV[4 + s] then
    return {0, KEYS[4 + s]}
  end
end
redis.call("DEL", KEYS[3])
for s = 1, n do
  redis.call("HSET", KEYS[3], KEYS[4 + s], ARGV[4 + s])
end
redis.call("SET", KEYS[1], ARGV[2])
redis.call("HSET", KEYS[4], "state", "done", "finished_at", ARGV[3], "events_read", ARGV[4],
  "message", "")
return {1}
