-- Warden rate limiter: several Takes, every algorithm, each Take all or nothing.
--
-- This script mirrors limiter/algo.go line for line (same state, same integer units, same
-- rounding) and the Take of limiter/memstore (hits applied in order, rolled back if any is
-- refused, the allowed hits of a refused Take then reported as peeks). Read algo.go for the
-- formulas; the comments here only say where each one lives.
--
-- One call carries one or more Takes (a batch of the store's batcher), run in order on one
-- reading of the clock: each Take sees what the Takes before it wrote, exactly as if each
-- were its own call, and the call pays Redis's per-command and per-script cost once.
--
-- KEYS     the counters of every Take's hits, Take after Take. A counter's name is its hash's
--          key followed by its field, the last FL bytes (see names.go); a sliding log is a
--          sorted set under the whole name. On a Cluster every name of one call is in one slot
--          (the names of a Take share a hash tag; the store groups Takes by slot).
-- ARGV[1]  now, integer µs since the Unix epoch, or "" to read Redis TIME (once per call).
-- ARGV[2]  the smallest TTL in ms to give a key (1 in production).
-- ARGV[3]  S, the number of specs, then S specs of 6 values each: algorithm (0 token bucket,
--          1 sliding window, 2 fixed window, 3 sliding log), cost n, P (µs), L (B for the
--          token bucket), then UnitTicks, MicroTicks (token bucket) or Granule, Granules
--          (sliding window, per bucket; the script derives Q and S from P and L). A spec is
--          what a hit needs but its key: the hits of a call mostly share a few, sent once.
-- Then for each Take: the index (from 1) of its hit's spec if it has one hit, else -h (h its
--          number of hits) followed by the index of each hit's spec.
-- A call of one Take of one hit, of a token bucket or a fixed window, takes a short path that
-- skips the setup of the general one (the specs table, the general Take's functions).
--
-- Reply: for each Take, in order: allowed, then for each hit: allowed, remaining,
-- reset_after µs, retry_after µs (1 + 4h integers per Take, one flat array for the call).
--
-- State (see the README's "Redis storage"): the counters of the token bucket, the fixed window
-- and the sliding window are fields of hashes, one value each, which tells its own expiry E
-- (limiter.Params.Expiry), the instant from which it reads as an absent counter:
--   token bucket    "At" (decimal) when N = 0, else "At:N" (E = At, or At + 1 when N > 0).
--                   "At" alone is an integer, which the hash's listpack keeps in 9 bytes.
--   fixed window    "-X" with X = W + N when N < P, W = At + P the window's end, E = W (W is
--                   a multiple of P, so N = X mod P; X - E = N is below P), else "-W:N".
--                   Also an integer.
--   sliding window  MessagePack array {E, the NB + 1 bucket counts} (about 21 bytes), with
--                   E = At + (NB + 1) Q.
--   sliding log     a sorted set with one member per unit, scored by its timestamp (member
--                   "timestamp:k", k counting the units of one timestamp), with a TTL.
-- The first byte tells them apart (a digit, '-', 0x9c), so a value written by another
-- algorithm is an absent counter; a key of another type under a hash's name is deleted.
-- A value past its expiry reads exactly as an absent counter (algo.go's formulas give the
-- same result for both), so a field need not be removed when it expires: each hash keeps, in
-- two fields of its own, 'e', an instant by which every counter in it has expired (its TTL is
-- set to it: PEXPIRE only when a counter's expiry passes it, then as far past that expiry as
-- the counter has left, at least a minute, at most an hour; so the hash of live counters never
-- expires and a hash left alone does), and 'n', its length after its last sweep. Adding a field to a hash of length at least n + max(16, n/2) sweeps it:
-- HGETALL, and HDEL of the fields past their expiry, so the expired fields of a hash are at
-- most max(16, half its live ones) plus those that expired since, and the sweeps cost O(1)
-- field reads per added field.
-- Every integer stays below 2^53 (limiter.Limit.Validate sees to it), so doubles are exact.

local floor = math.floor
local function ceildiv(x, y) return floor((x + y - 1) / y) end
local function max(a, b) if a > b then return a end return b end
local function min(a, b) if a < b then return a end return b end
local byte, sub, find = string.byte, string.sub, string.find
local MINUS, DIGIT0, DIGIT9 = 45, 48, 57 -- '-', '0', '9'
local SWHEAD = '\156' -- 0x9c, a MessagePack array of NB + 2 = 12 elements
local NB = 10 -- limiter.SlidingBuckets

-- ARGV holds decimal integers: x + 0 converts one as tonumber would, without a call.
local now = ARGV[1]
if now == '' then
  local tm = redis.call('TIME')
  now = tm[1] * 1000000 + tm[2]
else
  now = now + 0
end
local minttl = ARGV[2] + 0

-- The hashes. FL is names.go's fieldLen.
local FL = 12

local function split(name) return sub(name, 1, -FL - 1), sub(name, -FL) end

-- read returns the value of field f of hash h (false if there is none) and h's field 'e' (-1
-- if there is none).
local function read(h, f)
  local r = redis.pcall('HMGET', h, f, 'e')
  if r.err then -- another type under the hash's name: the counters are absent
    redis.call('DEL', h)
    return false, -1
  end
  return r[1], tonumber(r[2]) or -1
end

-- expiryOf is the expiry of a stored value (see the header), 0 if it is none of ours.
local function expiryOf(v)
  local b = byte(v, 1)
  if b == MINUS then
    local i = find(v, ':', 2, true)
    if i then return tonumber(sub(v, 2, i - 1)) or 0 end
    return tonumber(sub(v, 2)) or 0 -- X = E + N with N < P: E <= X, by less than P
  elseif b and b >= DIGIT0 and b <= DIGIT9 then
    local i = find(v, ':', 1, true)
    if i then return (tonumber(sub(v, 1, i - 1)) or -1) + 1 end
    return tonumber(v) or 0
  elseif sub(v, 1, 1) == SWHEAD then
    local ok, a = pcall(cmsgpack.unpack, v)
    if ok and type(a) == 'table' then return tonumber(a[1]) or 0 end
  end
  return 0
end

-- sweep removes the fields of h past their expiry, and records its length in 'n'.
local function sweep(h)
  local a = redis.call('HGETALL', h)
  local dead = {}
  for j = 1, #a, 2 do
    if #a[j] == FL and expiryOf(a[j + 1]) <= now then dead[#dead + 1] = a[j] end
  end
  if #dead > 0 then redis.call('HDEL', h, unpack(dead)) end
  redis.call('HSET', h, 'n', #a / 2 - #dead)
end

-- write stores v, of expiry exp (after now), as field f of h, whose 'e' is e (fresh: f was
-- absent), and returns h's 'e' after it.
local function write(h, f, v, exp, fresh, e)
  if e < 0 or exp > e or minttl > 1 then
    -- The hash's expiry passes the counter's by as much as the counter has left, at least a
    -- minute and at most an hour: a PEXPIRE per hash once in a while, not per write. With a
    -- test's clock (minttl > 1), every write sets the TTL, as Redis's clock does not follow
    -- the test's.
    local ne = max(e, exp + min(max(exp - now, 60000000), 3600000000))
    local ttl = max(minttl, ceildiv(ne - now, 1000))
    if e < 0 then
      redis.call('HSET', h, 'e', ne, 'n', 0, f, v)
      redis.call('PEXPIRE', h, ttl)
      return ne
    end
    redis.call('HSET', h, f, v, 'e', ne)
    redis.call('PEXPIRE', h, ttl)
    e = ne
  else
    redis.call('HSET', h, f, v)
  end
  if fresh then
    local n = redis.call('HLEN', h)
    if n >= 16 then
      local base = tonumber(redis.call('HGET', h, 'n')) or 0
      if n >= base + max(16, floor(base / 2)) then sweep(h) end
    end
  end
  return e
end

-- The reply, filled Take after Take; nres is its length.
local res, nres = {}, 0

-- The common case: one hit of a token bucket (tb) or a fixed window, of cost n, period P, limit
-- L (B for the token bucket), UT and MT (token bucket only), on key. The same formulas as
-- bucket/bucketCommit and fixed/fixedCommit below, and the same encoding as decode/encode (the
-- mirror test and the conformance suite run through both paths), without the tables of the
-- general Take.
local function fast(key, tb, n, P, L, UT, MT)
  local t = now
  local At, N = 0, 0
  local h, f = split(key)
  local v, e = read(h, f)
  local fresh = not v
  if v then
    local b = byte(v, 1)
    if tb and b and b >= DIGIT0 and b <= DIGIT9 or not tb and b == MINUS then
      if not tb then v = sub(v, 2) end
      local i = find(v, ':', 1, true)
      if i then
        At, N = tonumber(sub(v, 1, i - 1)), tonumber(sub(v, i + 1))
        if At and not tb then At = At - P end
      elseif tb then
        At = tonumber(v)
      else
        local x = tonumber(v)
        if x then
          N = math.fmod(x, P)
          At = x - N - P
        end
      end
      if not At or not N then At, N = 0, 0 end
    end
  end
  local r = nres
  nres = r + 5
  if tb then
    local cp, dt = L * UT, 0
    if At >= t then
      local d = At - t
      if d > floor(cp / MT) then dt = cp else dt = min(cp, d * MT + N) end
    end
    if n > L then
      local reset = ceildiv(dt, MT)
      res[r + 1], res[r + 2], res[r + 3], res[r + 4], res[r + 5] = 0, 0, max(0, floor((cp - dt) / UT)), reset, max(reset, P)
      return
    end
    local nx = dt + n * UT
    if nx > cp then
      res[r + 1], res[r + 2], res[r + 3], res[r + 4], res[r + 5] = 0, 0, floor((cp - dt) / UT), ceildiv(dt, MT), ceildiv(nx - cp, MT)
      return
    end
    res[r + 1], res[r + 2], res[r + 3], res[r + 4], res[r + 5] = 1, 1, floor((cp - nx) / UT), ceildiv(nx, MT), 0
    if n == 0 then return end
    At, N = t + floor(nx / MT), nx % MT
    local exp = At
    if N > 0 then
      exp = At + 1
      v = string.format('%d:%d', At, N)
    else
      v = string.format('%d', At)
    end
    write(h, f, v, exp, fresh, e)
    return
  end
  t = max(t, At)
  local w = t - t % P
  local count = 0
  if At == w then count = N end
  local toEnd = w + P - t
  if n > L or count + n > L then
    local reset = 0
    if count > 0 then reset = toEnd end
    local retry = toEnd
    if n > L then retry = max(reset, P) end
    res[r + 1], res[r + 2], res[r + 3], res[r + 4], res[r + 5] = 0, 0, max(0, L - count), reset, retry
    return
  end
  local after = count + n
  local reset = 0
  if after > 0 then reset = toEnd end
  res[r + 1], res[r + 2], res[r + 3], res[r + 4], res[r + 5] = 1, 1, max(0, L - after), reset, 0
  if n == 0 then return end
  if after < P then
    v = string.format('-%d', w + P + after)
  else
    v = string.format('-%d:%d', w + P, after)
  end
  write(h, f, v, w + P, fresh, e)
end

-- The short path: a call of one Take of one hit, of a token bucket or a fixed window (ARGV:
-- now, the TTL, "1", the spec, "1"), as the store sends a Take that finds no other to share
-- its call with: most calls at low and medium load. It is the general path's fast on the same
-- values, without the specs table and the general Take's functions.
if #ARGV == 10 and ARGV[3] == '1' and ARGV[10] == '1' then
  local a = ARGV[4]
  if a == '0' or a == '2' then
    fast(KEYS[1], a == '0', ARGV[5] + 0, ARGV[6] + 0, ARGV[7] + 0, ARGV[8] + 0, ARGV[9] + 0)
    return res
  end
end

-- The specs: specs[i] = {algorithm, n, P, L, x, y}, under i's decimal string, as ARGV has it
-- (a table lookup, where tonumber would be a strtod per hit).
local specs = {}
local nspecs = ARGV[3] + 0
for i = 1, nspecs do
  local b = 3 + (i - 1) * 6
  specs[tostring(i)] = { ARGV[b + 1] + 0, ARGV[b + 2] + 0, ARGV[b + 3] + 0, ARGV[b + 4] + 0,
    ARGV[b + 5] + 0, ARGV[b + 6] + 0 }
end

-- general returns the general Take (any algorithm, any number of hits). Its functions are
-- defined only by a call that has such a Take: a call of common cases alone skips them.
local function general()
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

  -- Sliding window (algo.go: slot, bucketCount, oldest, evalSliding, slidingRetry, Commit).
  -- NB is limiter.SlidingBuckets; Q = ceil(P/NB) and S = floor(L/NB) are limiter.Params'
  -- Bucket and Slack. c.B is the ring of NB+1 bucket counts, 1-based.

  local function slot(s, Q) return (s / Q) % (NB + 1) + 1 end

  local function bcount(c, s, Q)
    if s > c.At or s < c.At - NB * Q then return 0 end
    return c.B[slot(s, Q)]
  end

  local function sliding(c, t, n, P, L, G, Gs)
    local Q, S = ceildiv(P, NB), floor(L / NB)
    t = max(t, c.At)
    local w = t - t % Q
    local k = floor((t - w) / G)
    local est, reset = 0, 0
    for j = 0, NB - 1 do
      local b = bcount(c, w - j * Q, Q)
      est = est + b
      if b > 0 and reset == 0 then reset = w - j * Q + (NB + 1) * Q - t end
    end
    local old = bcount(c, w - NB * Q, Q)
    est = est + max(ceildiv(old * (Gs - k), Gs), old - S)
    if old > 0 and reset == 0 then reset = w + Q - t end
    if n > L then
      return impossible(P, L - est, reset)
    end
    if est + n <= L then
      if n > 0 then reset = w + (NB + 1) * Q - t end
      return true, max(0, L - est - n), reset, 0
    end
    local retry = w + (NB + 1) * Q - t
    for i = 0, NB do
      local b = w + i * Q
      local full = 0
      for j = 0, NB - 1 do full = full + bcount(c, b - j * Q, Q) end
      local o = bcount(c, b - NB * Q, Q)
      local r = L - n - full
      if r >= 0 and o - S <= r then
        local j = 0
        if o > 0 then j = Gs - floor(r * Gs / o) end
        if j <= 0 then
          retry = max(b, t) - t
          break
        elseif j * G < Q then
          retry = b + j * G - t
          break
        end
      end
    end
    return false, max(0, L - est), reset, retry
  end

  local function slidingCommit(c, t, n, P)
    local Q = ceildiv(P, NB)
    t = max(t, c.At)
    local w = t - t % Q
    if w - c.At > NB * Q then
      for j = 1, NB + 1 do c.B[j] = 0 end
    else
      local s = c.At + Q
      while s <= w do
        c.B[slot(s, Q)] = 0
        s = s + Q
      end
    end
    c.At = w
    local i = slot(w, Q)
    c.B[i] = c.B[i] + n
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
      return c.At + (NB + 1) * ceildiv(P, NB)
    elseif algo == 2 then
      return c.At + P
    end
    if #c.Log == 0 then return 0 end
    return c.Log[#c.Log] + P
  end

  -- es[h] is the field 'e' of hash h as the Take being run last read or wrote it: its saves
  -- follow all its loads, and may write several counters of one hash.
  local es

  -- Loading and saving. A counter is {algo, At, N, B, Log, foreign, dropped, loaded, fresh}
  -- (fresh: its field was absent); B (the
  -- sliding window's ring) and Log (the sliding log) only for their algorithm.
  local function absent(algo, foreign)
    local c = { algo = algo, At = 0, N = 0, foreign = foreign, dropped = 0, loaded = 0 }
    if algo == 1 then
      c.B = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 }
    elseif algo == 3 then
      c.Log = {}
    end
    return c
  end

  -- The stored values (see the header): one field per counter but for the sliding log, its
  -- algorithm told by its first byte, so that a value written by another reads as absent.

  -- decode returns the counter stored as v for algo, or nil if v is another algorithm's.
  local function decode(v, algo, P)
    local b = byte(v, 1)
    if algo == 1 then
      if sub(v, 1, 1) ~= SWHEAD then return nil end
      local ok, a = pcall(cmsgpack.unpack, v)
      if not ok or type(a) ~= 'table' or #a ~= NB + 2 then return nil end
      local c = absent(algo, false)
      c.At = a[1] - (NB + 1) * ceildiv(P, NB)
      for j = 1, NB + 1 do c.B[j] = a[j + 1] end
      return c
    end
    local neg = b == MINUS
    if (algo == 2) ~= neg then return nil end
    if neg then v = sub(v, 2) end
    if not b or not neg and (b < DIGIT0 or b > DIGIT9) then return nil end
    local c = absent(algo, false)
    local i = find(v, ':', 1, true)
    if i then
      c.At, c.N = tonumber(sub(v, 1, i - 1)), tonumber(sub(v, i + 1))
      if c.At and algo == 2 then c.At = c.At - P end -- the window's end
    elseif algo == 0 then
      c.At = tonumber(v)
    else
      -- Fixed window: W + N with N < P (W = At + P, a multiple of P).
      local x = tonumber(v)
      if x then
        c.N = math.fmod(x, P) -- exact, unlike x % P near 2^53
        c.At = x - c.N - P
      end
    end
    if not c.At or not c.N then return nil end
    return c
  end

  local function load(key, algo, P)
    if algo == 3 then
      local r = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
      if r.err then return absent(algo, true) end
      local c = absent(algo, false)
      for j = 2, #r, 2 do c.Log[#c.Log + 1] = tonumber(r[j]) end
      c.loaded = #c.Log
      return c
    end
    local h, f = split(key)
    local v, e = read(h, f)
    es[h] = e
    local c = v and decode(v, algo, P) or absent(algo, false)
    c.fresh = not v
    return c
  end

  local function copy(c)
    local d = {}
    for k, v in pairs(c) do d[k] = v end
    if c.Log then
      local log = {}
      for j = 1, #c.Log do log[j] = c.Log[j] end
      d.Log = log
    end
    if c.B then
      local B = {}
      for j = 1, NB + 1 do B[j] = c.B[j] end
      d.B = B
    end
    return d
  end

  local fmt = string.format

  -- encode is the value of c (not a sliding log): see the header.
  local function encode(c, P)
    if c.algo == 1 then
      return cmsgpack.pack({ c.At + (NB + 1) * ceildiv(P, NB), unpack(c.B) })
    elseif c.algo == 0 then
      if c.N == 0 then return fmt('%d', c.At) end
      return fmt('%d:%d', c.At, c.N)
    end
    if c.N < P then return fmt('-%d', c.At + P + c.N) end
    return fmt('-%d:%d', c.At + P, c.N)
  end

  local function save(key, c, P)
    if c.algo ~= 3 then
      local h, f = split(key)
      local e = es[h]
      if not e then -- a log's name, then another algorithm, in one Take
        local _
        _, e = read(h, f)
      end
      es[h] = write(h, f, encode(c, P), expiry(c, c.algo, P), c.fresh, e)
      return
    end
    local ttl = max(minttl, ceildiv(max(expiry(c, c.algo, P) - now, 0), 1000))
    if c.foreign then redis.call('DEL', key) end
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
      args[#args + 1] = fmt('%d:%d', ts, k)
    end
    if #args > 0 then redis.call('ZADD', key, unpack(args)) end
    redis.call('PEXPIRE', key, ttl)
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

  -- take runs the Take of h hits whose keys start at KEYS[k0] and whose specs' indexes start
  -- at ARGV[a0], and appends its 1 + 4h integers to the reply.
  return function(k0, a0, h)
    local states, origs, periods, order = {}, {}, {}, {}
    es = {}
    local o0 = nres
    nres = o0 + 1 + 4 * h
    res[o0 + 1] = 1
    local all = true
    for i = 1, h do
      local key = KEYS[k0 + i - 1]
      local sp = specs[ARGV[a0 + i - 1]]
      local algo, n, P, L, x, y = sp[1], sp[2], sp[3], sp[4], sp[5], sp[6]
      local c = states[key]
      if c == nil then
        c = load(key, algo, P)
        states[key] = c
        if h > 1 then origs[key] = copy(c) end
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
      local o = o0 + 1 + (i - 1) * 4
      res[o + 1], res[o + 2], res[o + 3], res[o + 4] = ok and 1 or 0, remaining, reset, retry
    end

    if all then
      for _, key in ipairs(order) do save(key, states[key], periods[key]) end
      return
    end

    -- Refused: nothing is written; the hits this limit alone allowed are reported as peeks
    -- of the state before the Take.
    res[o0 + 1] = 0
    for i = 1, h do
      local o = o0 + 1 + (i - 1) * 4
      if res[o + 1] == 1 then
        local sp = specs[ARGV[a0 + i - 1]]
        local algo = sp[1]
        local c = origs[KEYS[k0 + i - 1]]
        if c.algo ~= algo then c = absent(algo, true) end
        local ok, remaining, reset, retry = eval(c, algo, now, 0, sp[3], sp[4], sp[5], sp[6])
        res[o + 1], res[o + 2], res[o + 3], res[o + 4] = ok and 1 or 0, remaining, reset, retry
      end
    end
  end
end

-- The Takes, in order.
local take
local pos, k, last = 4 + 6 * nspecs, 1, #ARGV
while pos <= last do
  local sp = specs[ARGV[pos]]
  if sp then -- one hit, of that spec
    if sp[1] == 0 or sp[1] == 2 then
      fast(KEYS[k], sp[1] == 0, sp[2], sp[3], sp[4], sp[5], sp[6])
    else
      if not take then take = general() end
      take(k, pos, 1)
    end
    k = k + 1
    pos = pos + 1
  else -- -h
    local h = -tonumber(ARGV[pos])
    if not take then take = general() end
    take(k, pos + 1, h)
    k = k + h
    pos = pos + 1 + h
  end
end
return res
