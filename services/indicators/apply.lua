-- What a batch of events counts, all or nothing (engine.h): the sums of
-- their adds, their replacements, and their done markers.
--
-- KEYS: 1 indicators:current
-- ARGV: 1 the generation to write (its keys are built here, under
--         "indicators:g<N>:", since only the script knows it is current),
--       2 "1": refuse unless indicators:current (absent: 0) is that
--         generation (a projector); "0": write it as it is (a rebuild,
--         into a generation nobody reads yet),
--       3 done markers' lifetime (s),
--       4 D, then D done-marker keys,
--       then A, then A adds: key suffix, field, delta,
--       then R, then R replacements: identity, version, T, then T
--         triples: key suffix, field, delta.
-- Returns {1} when applied; {-1, current} when the generation is not
-- current (nothing written: the caller reads the generation and its
-- cursors again); {-2, key...} with the done markers already set (nothing
-- written: another reader counted those events, the caller leaves them
-- out and calls again); {-3, key} when a record's stored replacement does
-- not read (nothing written: the batch fails and is read again, and is
-- dead-lettered if it keeps failing).
--
-- A field that comes back to 0 is deleted, so a record's replacement that
-- moves its count elsewhere leaves nothing behind, and the key space holds
-- the same fields whichever way the figures were reached.
local gen = ARGV[1]
if ARGV[2] == "1" then
  local current = redis.call("GET", KEYS[1]) or "0"
  if current ~= gen then
    return {-1, current}
  end
end

local n_done = tonumber(ARGV[4])
local done_first = 5
local already = {-2}
for k = done_first, done_first + n_done - 1 do
  if redis.call("EXISTS", ARGV[k]) == 1 then
    already[#already + 1] = ARGV[k]
  end
end
if #already > 1 then
  return already
end

local prefix = "indicators:g" .. gen .. ":"
local function move(suffix, field, delta)
  local key = prefix .. suffix
  if redis.call("HINCRBY", key, field, delta) == 0 then
    redis.call("HDEL", key, field)
  end
end

local i = done_first + n_done
local n_adds = tonumber(ARGV[i])
local adds_first = i + 1
i = adds_first + 3 * n_adds

-- Replacements are read before anything is written: Redis does not undo
-- what a script wrote before an error, so a record whose stored version
-- or triples do not read must stop the batch while nothing is written yet.
-- A replacement: what the record counted as of an older version is taken
-- back, and what it counts now is counted and kept (version "v", triples
-- "t" as a flat JSON array of strings), unless the version held is as new.
local n_repl = tonumber(ARGV[i])
i = i + 1
local plans = {}
for _ = 1, n_repl do
  local identity, version, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local rkey = prefix .. "r:" .. identity
  local held = redis.call("HMGET", rkey, "v", "t")
  local held_version = held[1] and tonumber(held[1])
  if held[1] and not held_version then
    return {-3, rkey}
  end
  if not held_version or held_version < tonumber(version) then
    local old = {}
    if held[2] then
      local ok, decoded = pcall(cjson.decode, held[2])
      if not ok or type(decoded) ~= "table" then
        return {-3, rkey}
      end
      old = decoded
    end
    plans[#plans + 1] = {rkey = rkey, version = version, old = old, first = i + 3, n = n}
  end
  i = i + 3 + 3 * n
end

for a = adds_first, adds_first + 3 * n_adds - 1, 3 do
  move(ARGV[a], ARGV[a + 1], ARGV[a + 2])
end

for _, plan in ipairs(plans) do
  local old = plan.old
  for j = 1, #old, 3 do
    move(old[j], old[j + 1], -tonumber(old[j + 2]))
  end
  local now = {}
  for j = plan.first, plan.first + 3 * plan.n - 1, 3 do
    move(ARGV[j], ARGV[j + 1], ARGV[j + 2])
    now[#now + 1] = ARGV[j]
    now[#now + 1] = ARGV[j + 1]
    now[#now + 1] = ARGV[j + 2]
  end
  redis.call("HSET", plan.rkey, "v", plan.version, "t", plan.n > 0 and cjson.encode(now) or "[]")
end

local ttl = ARGV[3]
for k = done_first, done_first + n_done - 1 do
  redis.call("SET", ARGV[k], "1", "EX", ttl)
end
return {1}
