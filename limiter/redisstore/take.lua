-- Warden rate limiter: one Take, every algorithm, all or nothing.
--
-- This script mirrors limiter/algo.go line for line (same state, same integer units, same
-- rounding) and the Take of limiter/memstore (hits applied in order, rolled back if any is
-- refused, the allowed hits of a refused Take then reported as peeks). Read algo.go for the
-- formulas; the comments here only say where each one lives.
--
-- KEYS[i]  the counter of hit i. All KEYS share one hash tag, so one Cluster slot.
-- ARGV[1]  now, integer µs since the Unix epoch, or "" to read Redis TIME.
-- ARGV[2]  the smallest TTL in ms to give a key (1 in production).
-- ARGV[3 + 6*(i-1) ...] for hit i: algorithm (0 token bucket, 1 sliding window, 2 fixed
--          window, 3 sliding log), cost n, P (µs), L (B for the token bucket), then
--          UnitTicks, MicroTicks (token bucket) or Granule, Granules (sliding window).
--
-- Reply: {allowed, then for each hit: allowed, remaining, reset_after µs, retry_after µs}.
--
-- State: the token bucket and both windows keep a hash {a = algorithm, t = At, n = N,
-- p = Prev}; the sliding log keeps a sorted set with one member per unit, scored by its
-- timestamp (member "timestamp:k", k counting the units of one timestamp). A key counted by
-- another algorithm (or of another type) is an absent counter. Every written key gets a
-- PEXPIRE at its limiter.Params.Expiry, rounded up to a millisecond.
-- Every integer stays below 2^53 (limiter.Limit.Validate sees to it), so doubles are exact.

local now = tonumber(ARGV[1])
if not now then
  local tm = redis.call('TIME')
  now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])
end
local minttl = tonumber(ARGV[2])

local floor = math.floor
local function ceildiv(x, y) return floor((x + y - 1) / y) end
local function max(a, b) if a > b then return a end return b end
local function min(a, b) if a < b then return a end return b end

-- A status: allowed (bool), remaining, reset, retry.
local function impossible(P, remaining, reset)
  return false, max(0, remaining), reset, max(reset, P)
end

-- Token bucket (algo.go: debt, evalBucket, Commit).
local function debt(c, t, B, UT, MT)
  if c.At < t then return 0 end
  local cp = B * UT
  local d = c.At - t
  if d > floor(cp / MT) then return cp end
  return min(cp, d * MT + c.N)
end

local function bucket(c, t, n, P, B, UT, MT)
  local cp = B * UT
  local dt = debt(c, t, B, UT, MT)
  if n > B then
    return impossible(P, floor((cp - dt) / UT), ceildiv(dt, MT))
  end
  local nx = dt + n * UT
  local ok = nx <= cp
  local after, retry = dt, 0
  if ok then after = nx else retry = ceildiv(nx - cp, MT) end
  return ok, floor((cp - after) / UT), ceildiv(after, MT), retry
end

local function bucketCommit(c, t, n, B, UT, MT)
  local d = debt(c, t, B, UT, MT) + n * UT
  c.At, c.N = t + floor(d / MT), d % MT
end

-- Fixed window (algo.go: evalFixed, Commit).
local function fixed(c, t, n, P, L)
  t = max(t, c.At)
  local w = t - t % P
  local count = 0
  if c.At == w then count = c.N end
  local toEnd = w + P - t
  if n > L then
    local reset = 0
    if count > 0 then reset = toEnd end
    return impossible(P, L - count, reset)
  end
  local ok = count + n <= L
  local after, retry = count, 0
  if ok then after = count + n else retry = toEnd end
  local reset = 0
  if after > 0 then reset = toEnd end
  return ok, max(0, L - after), reset, retry
end

local function fixedCommit(c, t, n, P)
  t = max(t, c.At)
  local w = t - t % P
  if c.At ~= w then c.At, c.N = w, 0 end
  c.N = c.N + n
end

-- Sliding window (algo.go: roll, evalSliding, slidingRetry, Commit).
local function roll(c, w, P)
  if c.At == w then return c.N, c.Prev end
  if c.At == w - P then return 0, c.N end
  return 0, 0
end

local function sliding(c, t, n, P, L, G, Gs)
  t = max(t, c.At)
  local w = t - t % P
  local k = floor((t - w) / G)
  local cur, prev = roll(c, w, P)
  local est = cur + ceildiv(prev * (Gs - k), Gs)
  local function reset(cu)
    if cu > 0 then return w + 2 * P - t end
    if prev > 0 then return w + P - t end
    return 0
  end
  if n > L then
    return impossible(P, L - est, reset(cur))
  end
  if est + n <= L then
    return true, max(0, L - est - n), reset(cur + n), 0
  end
  local retry
  local r = L - cur - n
  if r >= 0 and prev > 0 then
    local j = Gs - floor(r * Gs / prev)
    if j * G < P then retry = w + j * G - t end
  end
  if not retry then
    local j = 0
    if cur > 0 then j = Gs - floor((L - n) * Gs / cur) end
    if j <= 0 then
      retry = w + P - t
    elseif j * G < P then
      retry = w + P + j * G - t
    else
      retry = w + 2 * P - t
    end
  end
  return false, max(0, L - est), reset(cur), retry
end

local function slidingCommit(c, t, n, P)
  t = max(t, c.At)
  local w = t - t % P
  local cur, prev = roll(c, w, P)
  c.At, c.N, c.Prev = w, cur + n, prev
end

-- Sliding log (algo.go: logStart, evalLog, Commit). c.Log ascending, 1-based.
local function logStart(c, t, P)
  local lo, hi = 1, #c.Log + 1
  while lo < hi do
    local m = floor((lo + hi) / 2)
    if c.Log[m] <= t - P then lo = m + 1 else hi = m end
  end
  return lo
end

local function slog(c, t, n, P, L)
  local newest = 0
  if #c.Log > 0 then
    newest = c.Log[#c.Log]
    t = max(t, newest)
  end
  local i = logStart(c, t, P)
  local count = #c.Log - i + 1
  local reset = 0
  if count > 0 then reset = newest + P - t end
  if n > L then
    return impossible(P, L - count, reset)
  end
  if count + n <= L then
    if n > 0 then reset = P end
    return true, max(0, L - count - n), reset, 0
  end
  return false, max(0, L - count), reset, c.Log[i + count + n - L - 1] + P - t
end

local function slogCommit(c, t, n, P)
  if #c.Log > 0 then t = max(t, c.Log[#c.Log]) end
  local i = logStart(c, t, P)
  local kept = {}
  for j = i, #c.Log do kept[#kept + 1] = c.Log[j] end
  for _ = 1, n do kept[#kept + 1] = t end
  c.Log = kept
  c.dropped = c.dropped + (i - 1)
end

-- Expiry (algo.go: Params.Expiry).
local function expiry(c, algo, P)
  if algo == 0 then
    if c.N > 0 then return c.At + 1 end
    return c.At
  elseif algo == 1 then
    if c.N > 0 then return c.At + 2 * P end
    if c.Prev > 0 then return c.At + P end
    return c.At
  elseif algo == 2 then
    return c.At + P
  end
  if #c.Log == 0 then return 0 end
  return c.Log[#c.Log] + P
end

-- Loading and saving. A counter is {algo, At, N, Prev, Log, foreign, dropped, loaded}.
local function absent(algo, foreign)
  return { algo = algo, At = 0, N = 0, Prev = 0, Log = {}, foreign = foreign, dropped = 0, loaded = 0 }
end

local function load(key, algo)
  if algo == 3 then
    local r = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
    if r.err then return absent(algo, true) end
    local c = absent(algo, false)
    for j = 2, #r, 2 do c.Log[#c.Log + 1] = tonumber(r[j]) end
    c.loaded = #c.Log
    return c
  end
  local r = redis.pcall('HMGET', key, 'a', 't', 'n', 'p')
  if r.err then return absent(algo, true) end
  if tonumber(r[1]) ~= algo then return absent(algo, r[1] ~= false) end
  local c = absent(algo, false)
  c.At, c.N, c.Prev = tonumber(r[2]), tonumber(r[3]), tonumber(r[4])
  return c
end

local function copy(c)
  local d = {}
  for k, v in pairs(c) do d[k] = v end
  local log = {}
  for j = 1, #c.Log do log[j] = c.Log[j] end
  d.Log = log
  return d
end

local function save(key, c, P)
  if c.foreign then redis.call('DEL', key) end
  if c.algo == 3 then
    if not c.foreign and c.dropped > 0 then
      redis.call('ZREMRANGEBYRANK', key, 0, min(c.dropped, c.loaded) - 1)
    end
    -- Units taken now are the tail beyond what was kept of the loaded log. Their member
    -- is "timestamp:k", k counting the units with that timestamp before them.
    local first = max(c.loaded - c.dropped, 0) + 1
    if c.foreign then first = 1 end
    local args = {}
    for j = first, #c.Log do
      local ts = c.Log[j]
      local k = 0
      local m = j - 1
      while m >= 1 and c.Log[m] == ts do k = k + 1; m = m - 1 end
      args[#args + 1] = ts
      args[#args + 1] = string.format('%d:%d', ts, k)
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
  else
    redis.call('HSET', key, 'a', c.algo, 't', c.At, 'n', c.N, 'p', c.Prev)
  end
  redis.call('PEXPIRE', key, max(minttl, ceildiv(max(expiry(c, c.algo, P) - now, 0), 1000)))
end

local function eval(c, algo, t, n, P, L, x, y)
  if algo == 0 then return bucket(c, t, n, P, L, x, y)
  elseif algo == 1 then return sliding(c, t, n, P, L, x, y)
  elseif algo == 2 then return fixed(c, t, n, P, L)
  end
  return slog(c, t, n, P, L)
end

local function commit(c, algo, t, n, P, L, x, y)
  if algo == 0 then bucketCommit(c, t, n, L, x, y)
  elseif algo == 1 then slidingCommit(c, t, n, P)
  elseif algo == 2 then fixedCommit(c, t, n, P)
  else slogCommit(c, t, n, P) end
end

local states, origs, periods, order = {}, {}, {}, {}
local out = { 1 }
local all = true
for i = 1, #KEYS do
  local key = KEYS[i]
  local b = 2 + (i - 1) * 6
  local algo, n = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local P, L = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local x, y = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local c = states[key]
  if c == nil then
    c = load(key, algo)
    states[key], origs[key] = c, copy(c)
  elseif c.algo ~= algo then
    c = absent(algo, true)
    states[key] = c
  end
  local ok, remaining, reset, retry = eval(c, algo, now, n, P, L, x, y)
  if not ok then
    all = false
  elseif n > 0 and all then
    commit(c, algo, now, n, P, L, x, y)
    if not periods[key] then order[#order + 1] = key end
    periods[key] = P
  end
  local o = #out
  out[o + 1], out[o + 2], out[o + 3], out[o + 4] = ok and 1 or 0, remaining, reset, retry
end

if all then
  for _, key in ipairs(order) do save(key, states[key], periods[key]) end
  return out
end

-- Refused: nothing is written; the hits this limit alone allowed are reported as peeks of
-- the state before the Take.
out[1] = 0
for i = 1, #KEYS do
  local o = 1 + (i - 1) * 4
  if out[o + 1] == 1 then
    local b = 2 + (i - 1) * 6
    local algo = tonumber(ARGV[b + 1])
    local c = origs[KEYS[i]]
    if c.algo ~= algo then c = absent(algo, true) end
    local ok, remaining, reset, retry = eval(c, algo, now, 0,
      tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6]))
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = ok and 1 or 0, remaining, reset, retry
  end
end
return out
