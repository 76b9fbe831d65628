package limiter

import (
	"errors"
	"fmt"
	"time"

	"github.com/wardenhq/warden/fielderr"
)

// This file holds the four algorithms as pure functions over a Counter. The memory store
// calls them directly; the Redis store's Lua script mirrors them line for line, so every
// quantity here is an integer that a Lua 5.1 double holds exactly (below 2^53) once the limit
// has passed Validate.
//
// Units, for every algorithm and every store:
//
//   - Instants are integer microseconds since the Unix epoch (time.Time.UnixMicro; from Redis
//     TIME: seconds*1000000 + microseconds). Called t below.
//   - Durations are integer microseconds. Status durations are these times time.Microsecond.
//   - P is Period in microseconds, L is Limit, B is Burst (Limit when zero), n is the cost.
//   - Window starts are aligned to multiples of P since the epoch: w = t - (t mod P).
//   - ceil(x/y) for integers x >= 0, y > 0 is (x + y - 1) div y; "div" truncates.
//
// Every algorithm follows the same rules:
//
//   - Cost 0 peeks: the status is computed and nothing is written.
//   - A refused hit writes nothing.
//   - A cost above the quota (n > B for TokenBucket, n > L otherwise) is always refused, with
//     RetryAfter = max(ResetAfter, P): a bounded, positive hint rather than a promise.
//   - Remaining is never negative; RetryAfter is zero when allowed and positive when refused.
//
// Several hits in one Take are applied in order against the state the previous hits left (two
// hits on one key see each other), and if any is refused the whole Take is rolled back; the
// statuses of a refused Take are then those of a peek (cost 0) for every hit that this limit
// alone allowed, and the refusal status for the others.

// maxExact is 2^53: every integer a Lua 5.1 double holds exactly is below it. The bounds
// keep intermediates at or below 2^52, so that Lua's math.floor(a/b) is also exact.
const maxExact = 1 << 53

// granulesPerWindow bounds the resolution of the sliding window's weight (see SlidingWindow).
const granulesPerWindow = 1 << 20

// SlidingBuckets is the number of sub-windows of a SlidingWindow: its period is cut into
// SlidingBuckets buckets, and the oldest bucket's count may be discounted by at most
// Limit/SlidingBuckets units (see SlidingWindow), so no interval of one period admits more
// than Limit + floor(Limit/SlidingBuckets). The Lua script of limiter/redisstore has the same
// constant.
const SlidingBuckets = 10

// maxLimit bounds Limit and Burst for every algorithm, so products in the formulas stay below
// 2^53.
const maxLimit = 1 << 32

// MaxLogLimit is the largest Limit a SlidingLog accepts: it stores one timestamp per unit.
const MaxLogLimit = 1000

// Counter is the stored state of one counter key. The same struct serves every algorithm;
// fields an algorithm does not use stay zero. The zero Counter is an absent key.
//
// TokenBucket (GCRA): the theoretical arrival time TAT = At + N/MicroTicks microseconds, that
// is At whole microseconds plus a fraction N (0 <= N < MicroTicks) counted in ticks.
//
// FixedWindow: At is the start of the window the count belongs to (µs), N the units taken in
// it.
//
// SlidingWindow: At is the start of the newest bucket written (µs); Log holds the units taken
// in the SlidingBuckets+1 buckets that end with it, as a ring indexed by (bucket start / Q)
// mod (SlidingBuckets+1). A Log of another length is all zeros.
//
// SlidingLog: Log holds one timestamp (µs) per unit taken, ascending; At and N are unused.
type Counter struct {
	At  int64
	N   int64
	Log []int64
}

// Params are a Limit's constants in the units the algorithms use. Compute them once per limit
// with Limit.Params (after Validate); stores pass them to the Lua script as arguments, so the
// script derives none but the sliding window's Q and S (one ceil and one floor division).
type Params struct {
	Algorithm Algorithm
	// Period is P in microseconds.
	Period int64
	// Limit is L.
	Limit int64
	// Burst is B: Burst, or Limit when Burst is zero (TokenBucket only; equal to Limit for the
	// others).
	Burst int64
	// UnitTicks and MicroTicks are TokenBucket's exact rational emission interval: with
	// g = gcd(P, L), one unit costs UnitTicks = P/g ticks and one microsecond is
	// MicroTicks = L/g ticks, so the interval P/L µs is UnitTicks/MicroTicks exactly.
	UnitTicks, MicroTicks int64
	// Bucket is SlidingWindow's sub-window, Q = ceil(P / SlidingBuckets) µs; Slack is
	// floor(L / SlidingBuckets), the most its oldest bucket's count may be discounted.
	Bucket, Slack int64
	// Granule and Granules are SlidingWindow's weight resolution within a bucket: Granule =
	// ceil(Q / 2^20) microseconds, Granules = ceil(Q / Granule) granules per bucket. (The
	// Lua script receives Granule and Granules and derives Q and Slack from P and L.)
	Granule, Granules int64
}

// Validate reports whether the limit is usable: Limit >= 1, Period a positive whole number of
// microseconds, Burst >= 0, and the bounds that keep every formula exact in 64-bit integers
// and in Lua doubles. The returned error names the offending field in lower case
// ("limit", "period", "burst", "algorithm"): a *fielderr.Error when the caller wraps it with a
// path.
func (l Limit) Validate() error {
	switch {
	case l.Algorithm > SlidingLog:
		return &fielderr.Error{Path: "algorithm", Err: fmt.Errorf("unknown algorithm %d", l.Algorithm)}
	case l.Period <= 0:
		return &fielderr.Error{Path: "period", Err: errors.New("must be positive")}
	case l.Period%time.Microsecond != 0:
		return &fielderr.Error{Path: "period", Err: errors.New("must be a whole number of microseconds")}
	case l.Limit < 1:
		return &fielderr.Error{Path: "limit", Err: errors.New("must be at least 1")}
	case l.Limit > maxLimit:
		return &fielderr.Error{Path: "limit", Err: fmt.Errorf("must be at most %d", int64(maxLimit))}
	case l.Burst < 0:
		return &fielderr.Error{Path: "burst", Err: errors.New("must not be negative")}
	case l.Burst > maxLimit:
		return &fielderr.Error{Path: "burst", Err: fmt.Errorf("must be at most %d", int64(maxLimit))}
	case l.Algorithm == SlidingLog && l.Limit > MaxLogLimit:
		return &fielderr.Error{Path: "limit", Err: fmt.Errorf("sliding_log keeps one timestamp per unit: at most %d", MaxLogLimit)}
	}
	p := l.Params()
	if p.Period > maxExact/4 {
		return &fielderr.Error{Path: "period", Err: errors.New("too long")}
	}
	if p.Algorithm == TokenBucket {
		// The largest intermediate is debt + n*UnitTicks + MicroTicks <= 2*B*UnitTicks + MicroTicks.
		if p.Burst > (maxExact/2-p.MicroTicks)/(2*p.UnitTicks) {
			return &fielderr.Error{Path: "burst", Err: fmt.Errorf("burst %d with %d per %v cannot be counted exactly (burst x period / gcd(period in µs, limit) must stay below 2^52)", p.Burst, l.Limit, l.Period)}
		}
	}
	return nil
}

// Params computes the limit's constants. The limit should have passed Validate.
func (l Limit) Params() Params {
	p := Params{
		Algorithm: l.Algorithm,
		Period:    int64(l.Period / time.Microsecond),
		Limit:     l.Limit,
		Burst:     l.Limit,
	}
	if p.Period < 1 {
		p.Period = 1
	}
	if p.Limit < 1 {
		p.Limit = 1
	}
	switch l.Algorithm {
	case TokenBucket:
		if l.Burst > 0 {
			p.Burst = l.Burst
		}
		g := gcd(p.Period, p.Limit)
		p.UnitTicks, p.MicroTicks = p.Period/g, p.Limit/g
	case SlidingWindow:
		p.Bucket = ceilDiv(p.Period, SlidingBuckets)
		p.Slack = p.Limit / SlidingBuckets
		p.Granule = ceilDiv(p.Bucket, granulesPerWindow)
		p.Granules = ceilDiv(p.Bucket, p.Granule)
	}
	return p
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// ceilDiv is ceil(x/y) for x >= 0, y > 0.
func ceilDiv(x, y int64) int64 { return (x + y - 1) / y }

// windowStart is t - (t mod P) with a floor modulus, so instants before the epoch align too.
func windowStart(t, p int64) int64 {
	m := t % p
	if m < 0 {
		m += p
	}
	return t - m
}

func micros(us int64) time.Duration { return time.Duration(us) * time.Microsecond }

// Eval computes the Status of taking cost units from c at instant now (µs since the epoch)
// without modifying c. Call Commit to record an allowed cost.
func (p *Params) Eval(c *Counter, now, cost int64) Status {
	switch p.Algorithm {
	case TokenBucket:
		return p.evalBucket(c, now, cost)
	case SlidingWindow:
		return p.evalSliding(c, now, cost)
	case FixedWindow:
		return p.evalFixed(c, now, cost)
	default:
		return p.evalLog(c, now, cost)
	}
}

// Commit records cost units taken from c at now. Call it only for a cost that Eval allowed
// at the same instant (and, within one Take, after the previous hits on c were committed).
func (p *Params) Commit(c *Counter, now, cost int64) {
	if cost <= 0 {
		return
	}
	switch p.Algorithm {
	case TokenBucket:
		d := p.debt(c, now) + cost*p.UnitTicks
		c.At, c.N = now+d/p.MicroTicks, d%p.MicroTicks
	case SlidingWindow:
		now = max(now, c.At)
		w := windowStart(now, p.Bucket)
		if len(c.Log) != SlidingBuckets+1 {
			if cap(c.Log) < SlidingBuckets+1 {
				c.Log = make([]int64, SlidingBuckets+1)
			}
			c.Log = c.Log[:SlidingBuckets+1]
			clear(c.Log)
		}
		// Zero the buckets between the newest written and w: their slots held buckets that
		// have left the window.
		if w-c.At > SlidingBuckets*p.Bucket {
			clear(c.Log)
		} else {
			for s := c.At + p.Bucket; s <= w; s += p.Bucket {
				c.Log[p.slot(s)] = 0
			}
		}
		c.At = w
		c.Log[p.slot(w)] += cost
	case FixedWindow:
		now = max(now, c.At)
		w := windowStart(now, p.Period)
		if c.At != w {
			c.At, c.N = w, 0
		}
		c.N += cost
	default:
		if len(c.Log) > 0 {
			now = max(now, c.Log[len(c.Log)-1])
		}
		i := p.logStart(c, now)
		n := copy(c.Log, c.Log[i:])
		c.Log = c.Log[:n]
		for range cost {
			c.Log = append(c.Log, now)
		}
	}
}

// Uncommit undoes the Commit of cost units for a Take that is rolled back: call it on the
// counter as that Commit left it, then restore At and N saved before the Commit. For
// SlidingLog it removes the cost newest timestamps, for SlidingWindow it takes cost back from
// the newest bucket (the buckets Commit zeroed are newer than the restored At, so they read as
// zero anyway); for the others it does nothing.
func (p *Params) Uncommit(c *Counter, cost int64) {
	if cost <= 0 {
		return
	}
	switch p.Algorithm {
	case SlidingLog:
		c.Log = c.Log[:max(0, int64(len(c.Log))-cost)]
	case SlidingWindow:
		if len(c.Log) == SlidingBuckets+1 {
			c.Log[p.slot(c.At)] -= cost
		}
	}
}

// Expiry is the instant (µs) from which c is equivalent to an absent counter: a store may
// forget the key then (the Redis store sets PEXPIREAT to it, rounded up to a millisecond).
//
//	TokenBucket:   At + 1 if N > 0, else At (the TAT, rounded up)
//	FixedWindow:   At + P
//	SlidingWindow: At + (SlidingBuckets+1)*Q (when the newest bucket leaves the window)
//	SlidingLog:    newest timestamp + P (0 when the log is empty)
func (p *Params) Expiry(c *Counter) int64 {
	switch p.Algorithm {
	case TokenBucket:
		if c.N > 0 {
			return c.At + 1
		}
		return c.At
	case SlidingWindow:
		return c.At + (SlidingBuckets+1)*p.Bucket
	case FixedWindow:
		return c.At + p.Period
	default:
		if len(c.Log) == 0 {
			return 0
		}
		return c.Log[len(c.Log)-1] + p.Period
	}
}

// impossible is the status of a cost above the quota: refused whatever the state.
func (p *Params) impossible(limit, remaining, resetAfter int64) Status {
	return Status{
		Limit:      limit,
		Remaining:  max(0, remaining),
		ResetAfter: micros(resetAfter),
		RetryAfter: micros(max(resetAfter, p.Period)),
	}
}

// TokenBucket, GCRA form. Work in ticks (see Params.UnitTicks): one unit costs UnitTicks,
// time drains MicroTicks per microsecond, and the bucket holds cap = B*UnitTicks.
//
//	debt    = 0                              if At < t (also an absent key)
//	        = cap                            if At - t > cap div MicroTicks (clock stepped back)
//	        = min(cap, (At-t)*MicroTicks + N) otherwise
//	next    = debt + n*UnitTicks
//	allowed = n <= B and next <= cap
//	after   = next if allowed, else debt
//	Remaining  = (cap - after) div UnitTicks
//	ResetAfter = ceil(after / MicroTicks) µs
//	RetryAfter = ceil((next - cap) / MicroTicks) µs when refused (n <= B)
//	Commit (n > 0): At = t + next div MicroTicks; N = next mod MicroTicks
//	Status.Limit = B
func (p *Params) debt(c *Counter, t int64) int64 {
	if c.At < t {
		return 0
	}
	cp := p.Burst * p.UnitTicks
	d := c.At - t
	if d > cp/p.MicroTicks {
		return cp
	}
	return min(cp, d*p.MicroTicks+c.N)
}

func (p *Params) evalBucket(c *Counter, t, n int64) Status {
	cp := p.Burst * p.UnitTicks
	debt := p.debt(c, t)
	if n > p.Burst {
		return p.impossible(p.Burst, (cp-debt)/p.UnitTicks, ceilDiv(debt, p.MicroTicks))
	}
	next := debt + n*p.UnitTicks
	s := Status{Limit: p.Burst, Allowed: next <= cp}
	after := debt
	if s.Allowed {
		after = next
	} else {
		s.RetryAfter = micros(ceilDiv(next-cp, p.MicroTicks))
	}
	s.Remaining = (cp - after) / p.UnitTicks
	s.ResetAfter = micros(ceilDiv(after, p.MicroTicks))
	return s
}

// FixedWindow, envoyproxy/ratelimit's windows: aligned to multiples of P since the epoch, the
// count resets at each boundary. (A refused hit is not counted here; Domain.CountRefused
// counts it as envoyproxy/ratelimit does, through a Hit whose Limit is the largest.)
//
//	t       = max(t, At)            (a clock that stepped back keeps the newer window)
//	w       = t - (t mod P)
//	count   = N if At == w, else 0
//	allowed = n <= L and count + n <= L
//	after   = count + n if allowed, else count
//	Remaining  = L - after
//	ResetAfter = w + P - t if after > 0, else 0
//	RetryAfter = w + P - t when refused (n <= L)
//	Commit (n > 0): if At != w { At = w; N = 0 }; N += n
func (p *Params) evalFixed(c *Counter, t, n int64) Status {
	t = max(t, c.At)
	w := windowStart(t, p.Period)
	var count int64
	if c.At == w {
		count = c.N
	}
	toEnd := w + p.Period - t
	if n > p.Limit {
		return p.impossible(p.Limit, p.Limit-count, ifPositive(count, toEnd))
	}
	s := Status{Limit: p.Limit, Allowed: count+n <= p.Limit}
	after := count
	if s.Allowed {
		after += n
	} else {
		s.RetryAfter = micros(toEnd)
	}
	s.Remaining = max(0, p.Limit-after)
	s.ResetAfter = micros(ifPositive(after, toEnd))
	return s
}

func ifPositive(n, d int64) int64 {
	if n > 0 {
		return d
	}
	return 0
}

// SlidingWindow: the period cut into SlidingBuckets buckets of Q = ceil(P/SlidingBuckets) µs,
// aligned to multiples of Q since the epoch. The sliding window [t-P, t) is covered by the
// current bucket, the SlidingBuckets-1 before it (counted in full), and the oldest one, which
// it overlaps only partly: that one is weighted by how much of it still overlaps, measured in
// granules of G = Granule µs (Gs = Granules per bucket, so every product stays below 2^53), but
// never discounted by more than S = Slack = floor(L/SlidingBuckets) units.
//
// The weight alone (the classic two-window estimate) assumes the oldest bucket's units were
// spread evenly over it; when they all came at its end, the window [t-P, t) holds them all
// while the estimate forgets them, and up to 2L pass in one period. The slack caps what is
// forgotten: whatever the traffic, no interval of length P admits more than L + S (for L below
// SlidingBuckets, S = 0: never more than L), and no run of SlidingBuckets whole buckets more
// than L. Traffic at the limit's rate, L/SlidingBuckets per bucket, is never held back by the
// cap.
//
//	t        = max(t, At)
//	w        = t - (t mod Q);  k = (t - w) div G
//	C(s)     = the units taken in the bucket starting at s (0 outside [At - NB*Q, At], NB =
//	           SlidingBuckets)
//	old      = C(w - NB*Q)
//	est      = sum of C(w - j*Q) for j in [0, NB) + max(ceil(old * (Gs - k) / Gs), old - S)
//	allowed  = n <= L and est + n <= L
//	after    = est + n if allowed, else est
//	Remaining  = max(0, L - after)
//	ResetAfter = s + (NB+1)*Q - t for the newest bucket s with units (w if allowed, n > 0);
//	             0 if none
//	RetryAfter (refused, n <= L): the first instant at which the same hit is allowed, with no
//	  other traffic: for each bucket start b = w + i*Q, i in [0, NB]: with F the full sum and
//	  O the oldest count at b, r = L - n - F; skip if r < 0 or O - S > r; else
//	    j = Gs - (r*Gs div O) if O > 0, else 0; if j <= 0: b - t; if j*G < Q: b + j*G - t.
//	  Failing all: w + (NB+1)*Q - t.
//	Commit (n > 0): zero the buckets after At up to w; At = w; C(w) += n
func (p *Params) slot(s int64) int {
	i := (s / p.Bucket) % (SlidingBuckets + 1)
	if i < 0 {
		i += SlidingBuckets + 1
	}
	return int(i)
}

// bucketCount is C(s) for a bucket start s.
func (p *Params) bucketCount(c *Counter, s int64) int64 {
	if s > c.At || s < c.At-SlidingBuckets*p.Bucket || len(c.Log) != SlidingBuckets+1 {
		return 0
	}
	return c.Log[p.slot(s)]
}

// oldest is the oldest bucket's share of the estimate, k granules into the current bucket.
func (p *Params) oldest(old, k int64) int64 {
	return max(ceilDiv(old*(p.Granules-k), p.Granules), old-p.Slack)
}

func (p *Params) evalSliding(c *Counter, t, n int64) Status {
	t = max(t, c.At)
	w := windowStart(t, p.Bucket)
	k := (t - w) / p.Granule
	var est int64
	reset := int64(0)
	for j := range int64(SlidingBuckets) {
		b := p.bucketCount(c, w-j*p.Bucket)
		est += b
		if b > 0 && reset == 0 {
			reset = w - j*p.Bucket + (SlidingBuckets+1)*p.Bucket - t
		}
	}
	old := p.bucketCount(c, w-SlidingBuckets*p.Bucket)
	est += p.oldest(old, k)
	if old > 0 && reset == 0 {
		reset = w + p.Bucket - t
	}
	if n > p.Limit {
		return p.impossible(p.Limit, p.Limit-est, reset)
	}
	s := Status{Limit: p.Limit, Allowed: est+n <= p.Limit}
	after := est
	if s.Allowed {
		after += n
		if n > 0 {
			reset = w + (SlidingBuckets+1)*p.Bucket - t
		}
	} else {
		s.RetryAfter = micros(p.slidingRetry(c, w, t, n))
	}
	s.Remaining = max(0, p.Limit-after)
	s.ResetAfter = micros(reset)
	return s
}

func (p *Params) slidingRetry(c *Counter, w, t, n int64) int64 {
	for i := range int64(SlidingBuckets + 1) {
		b := w + i*p.Bucket
		var full int64
		for j := range int64(SlidingBuckets) {
			full += p.bucketCount(c, b-j*p.Bucket)
		}
		old := p.bucketCount(c, b-SlidingBuckets*p.Bucket)
		r := p.Limit - n - full
		if r < 0 || old-p.Slack > r {
			continue
		}
		var j int64
		if old > 0 {
			j = p.Granules - r*p.Granules/old
		}
		switch {
		case j <= 0:
			return max(b, t) - t
		case j*p.Granule < p.Bucket:
			return b + j*p.Granule - t
		}
	}
	return w + (SlidingBuckets+1)*p.Bucket - t
}

// SlidingLog: exact. A timestamp counts while it is inside the window (t-P, t]; a unit taken
// at s frees up at s + P.
//
//	t       = max(t, newest timestamp)
//	i       = index of the first timestamp > t - P (the older ones have expired)
//	count   = len(Log) - i
//	allowed = n <= L and count + n <= L
//	after   = count + n if allowed, else count
//	Remaining  = L - after
//	ResetAfter = (t if allowed and n > 0, else the newest timestamp) + P - t, if after > 0; else 0
//	RetryAfter = Log[i + count + n - L - 1] + P - t when refused (n <= L)
//	Commit (n > 0): drop Log[:i]; append n copies of t
func (p *Params) logStart(c *Counter, t int64) int {
	lo, hi := 0, len(c.Log)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c.Log[m] <= t-p.Period {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (p *Params) evalLog(c *Counter, t, n int64) Status {
	newest := int64(0)
	if len(c.Log) > 0 {
		newest = c.Log[len(c.Log)-1]
		t = max(t, newest)
	}
	i := p.logStart(c, t)
	count := int64(len(c.Log) - i)
	var reset int64
	if count > 0 {
		reset = newest + p.Period - t
	}
	if n > p.Limit {
		return p.impossible(p.Limit, p.Limit-count, reset)
	}
	s := Status{Limit: p.Limit, Allowed: count+n <= p.Limit}
	after := count
	if s.Allowed {
		after += n
		if n > 0 {
			reset = p.Period
		}
	} else {
		s.RetryAfter = micros(c.Log[int64(i)+count+n-p.Limit-1] + p.Period - t)
	}
	s.Remaining = max(0, p.Limit-after)
	s.ResetAfter = micros(reset)
	return s
}
