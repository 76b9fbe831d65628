-- Warden rate limiter: one Take, every algorithm, all or nothing.
--
-- KEYS[i]   the counter of hit i (all KEYS share one hash tag, so one Cluster slot).
-- ARGV[1]   now in integer microseconds since the Unix epoch, or "" to read Redis TIME.
-- ARGV[1+5*(i-1)+1 .. +5] for hit i: algorithm, limit, period (µs), burst, cost.
--           algorithm: 0 token bucket (GCRA), 1 sliding window, 2 fixed window, 3 sliding log.
--
-- Reply: {allowed, then for each hit: allowed, remaining, reset_after µs, retry_after µs}.
--
-- Every hit's status is computed first, against the state as already changed by the hits
-- before it in the same Take (one key may appear twice); the new states are written only if
-- every hit is allowed. A denied Take writes nothing, apart from dropping expired sliding log
-- entries, which no answer depends on. Every written key gets a PEXPIRE at the moment its
-- state stops mattering. Integers stay below 2^53, so Lua's doubles hold them exactly.

local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local floor = math.floor

-- ceil(a/b) for a >= 0, b > 0.
local function ceildiv(a, b)
  return floor((a + b - 1) / b)
end

-- ms TTL from a µs duration, at least 1.
local function ttlms(us)
  local ms = ceildiv(us, 1000)
  if ms < 1 then ms = 1 end
  return ms
end

-- Token bucket in GCRA form. State: the theoretical arrival time (tat, µs).
-- emission interval T = period/limit, tolerance = burst*T; a cost c is allowed when
-- tat + c*T - tolerance <= now.
local function tb_load(key)
  return { tat = tonumber(redis.call('GET', key)) }
end

local function tb(st, limit, period, burst, cost)
  local tat = st.tat
  if not tat or tat < now then tat = now end
  local tolerance = burst * period                    -- scaled by limit: burst*T*limit
  -- Work in units scaled by limit to keep integers: x*limit for a time x.
  local used = (tat - now) * limit                    -- scaled
  local need = used + cost * period                   -- scaled, after this cost
  if need <= tolerance then
    local newtat = now + ceildiv(need, limit)
    local remaining = floor((tolerance - need) / period)
    return true, remaining, newtat - now, 0, { tat = newtat }
  end
  local remaining = 0
  if used < tolerance then remaining = floor((tolerance - used) / period) end
  local retry = -1
  if cost <= burst then retry = ceildiv(need - tolerance, limit) end
  return false, remaining, tat - now, retry, nil
end

local function tb_save(key, st)
  redis.call('SET', key, st.tat, 'PX', ttlms(st.tat - now))
end

-- Fixed window aligned to multiples of period since the epoch. State: window start, count.
local function fw_load(key)
  local v = redis.call('HMGET', key, 'w', 'c')
  return { w = tonumber(v[1]), c = tonumber(v[2]) }
end

local function fw(st, limit, period, cost)
  local w = now - now % period
  local c = 0
  if st.w == w and st.c then c = st.c end
  local reset = w + period - now
  if c + cost <= limit then
    return true, limit - c - cost, reset, 0, { w = w, c = c + cost, ttl = reset }
  end
  local remaining = limit - c
  if remaining < 0 then remaining = 0 end
  local retry = -1
  if cost <= limit then retry = reset end
  return false, remaining, reset, retry, nil
end

local function fw_save(key, st)
  redis.call('HSET', key, 'w', st.w, 'c', st.c)
  redis.call('PEXPIRE', key, ttlms(st.ttl))
end

-- Sliding window: the current fixed window's count plus the previous window's count
-- weighted by the share of the previous window that the sliding window still covers.
-- State: current window start, its count, the previous window's count.
local function sw_load(key)
  local v = redis.call('HMGET', key, 'w', 'c', 'p')
  return { w = tonumber(v[1]), c = tonumber(v[2]), p = tonumber(v[3]) }
end

local function sw(st, limit, period, cost)
  local w = now - now % period
  local c, p = 0, 0
  if st.w == w then
    c, p = st.c or 0, st.p or 0
  elseif st.w == w - period then
    p = st.c or 0
  end
  local elapsed = now - w
  -- weighted count, scaled by period: p*(period-elapsed) + c*period; used = ceil of it.
  local wp = p * (period - elapsed)
  local used = c + ceildiv(wp, period)
  -- reset: the previous window has slid out at w+period; the current one at w+2*period.
  local reset = 0
  if c > 0 then
    reset = w + 2 * period - now
  elseif p > 0 then
    reset = w + period - now
  end
  if used + cost <= limit then
    local nc = c + cost
    local r = 0
    if nc > 0 then r = w + 2 * period - now elseif p > 0 then r = w + period - now end
    return true, limit - used - cost, r, 0, { w = w, c = nc, p = p, ttl = w + 2 * period - now }
  end
  local remaining = limit - used
  if remaining < 0 then remaining = 0 end
  local retry = -1
  if cost <= limit then
    -- Earliest t in this window with c + ceil(p*(period-e)/period) + cost <= limit, else
    -- in the next window, where this window's c becomes the weighted previous count.
    local room = limit - cost - c                     -- allowed weighted previous count
    if room >= 0 then
      -- need p*(period-e) <= room*period  =>  e >= period - room*period/p
      local e = period - floor(room * period / p)
      retry = w + e - now
    else
      -- next window starts at w+period with p' = c; need c*(period-e) <= (limit-cost)*period
      local room2 = limit - cost
      local e = 0
      if c > 0 then e = period - floor(room2 * period / c) end
      if e < 0 then e = 0 end
      retry = w + period + e - now
    end
    if retry < 1 then retry = 1 end
  end
  return false, remaining, reset, retry, nil
end

local function sw_save(key, st)
  redis.call('HSET', key, 'w', st.w, 'c', st.c, 'p', st.p)
  redis.call('PEXPIRE', key, ttlms(st.ttl))
end

-- Sliding log: one sorted-set entry per admitted unit, scored by its time; entries older
-- than one period are dropped. State: the entries, plus units added earlier in this Take.
local function sl_load(key, period)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - period)
  return { n = redis.call('ZCARD', key), add = 0 }
end

local function sl(key, st, limit, period, cost)
  local n = st.n + st.add
  if n + cost <= limit then
    local reset = 0
    if cost > 0 or st.add > 0 then
      reset = period
    elseif n > 0 then
      local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      reset = tonumber(last[2]) + period - now
    end
    return true, limit - n - cost, reset, 0, { n = st.n, add = st.add + cost }
  end
  local remaining = limit - n
  if remaining < 0 then remaining = 0 end
  local reset = period
  if st.add == 0 and n > 0 then
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    reset = tonumber(last[2]) + period - now
  end
  local retry = -1
  if cost <= limit then
    -- the (n+cost-limit)-th oldest unit must expire first.
    local rank = n + cost - limit - 1
    if rank < st.n then
      local e = redis.call('ZRANGE', key, rank, rank, 'WITHSCORES')
      retry = tonumber(e[2]) + period - now
    else
      retry = period
    end
  end
  return false, remaining, reset, retry, nil
end

local function sl_save(key, st, period)
  if st.add > 0 then
    local base = redis.call('ZCOUNT', key, now, now)
    local args = {}
    for j = 1, st.add do
      args[#args + 1] = now
      args[#args + 1] = string.format('%d:%d', now, base + j)
    end
    redis.call('ZADD', key, unpack(args))
  end
  redis.call('PEXPIRE', key, ttlms(period))
end

local states = {}
local algos = {}
local order = {}
local out = { 1 }
local all = true

for i = 1, #KEYS do
  local key = KEYS[i]
  local b = 1 + (i - 1) * 5
  local algo = tonumber(ARGV[b + 1])
  local limit = tonumber(ARGV[b + 2])
  local period = tonumber(ARGV[b + 3])
  local burst = tonumber(ARGV[b + 4])
  local cost = tonumber(ARGV[b + 5])
  local st = states[key]
  if st == nil then
    if algo == 0 then st = tb_load(key)
    elseif algo == 1 then st = sw_load(key)
    elseif algo == 2 then st = fw_load(key)
    else st = sl_load(key, period) end
    order[#order + 1] = key
  end
  local ok, remaining, reset, retry, nst
  if algo == 0 then
    ok, remaining, reset, retry, nst = tb(st, limit, period, burst, cost)
  elseif algo == 1 then
    ok, remaining, reset, retry, nst = sw(st, limit, period, cost)
  elseif algo == 2 then
    ok, remaining, reset, retry, nst = fw(st, limit, period, cost)
  else
    ok, remaining, reset, retry, nst = sl(key, st, limit, period, cost)
  end
  if ok then
    if cost > 0 then
      if algo == 3 then nst.period = period end
      states[key] = nst
      algos[key] = algo
    else
      states[key] = st
    end
    out[#out + 1] = 1
  else
    states[key] = st
    all = false
    out[1] = 0
    out[#out + 1] = 0
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end

if all then
  for _, key in ipairs(order) do
    local algo = algos[key]
    local st = states[key]
    if algo == 0 then tb_save(key, st)
    elseif algo == 1 then sw_save(key, st)
    elseif algo == 2 then fw_save(key, st)
    elseif algo == 3 then sl_save(key, st, st.period) end
  end
end

return out
