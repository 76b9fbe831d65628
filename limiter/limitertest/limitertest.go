// Package limitertest checks a limiter.Store implementation against the Store contract and
// the algorithms of package limiter. Every store (limiter/memstore, limiter/redisstore) runs
// the same suite from its tests:
//
//	func TestConformance(t *testing.T) {
//		limitertest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
//			return memstore.New(memstore.Options{Now: now})
//		})
//	}
//
// The suite walks a fixed grid of instants through the now function it hands the store: it
// never sleeps and needs no other clock. It knows nothing of any particular store.
package limitertest

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/limiter"
)

// NewStore returns a fresh store for one subtest. The store must take its time from now
// (which the suite moves between calls, never during one) and may use t.Cleanup to release
// resources. Subtests use distinct keys, so stores may share a backend.
type NewStore func(t *testing.T, now func() time.Time) limiter.Store

// Base is the first instant of the grid: midnight UTC, aligned to every period the suite uses.
var base = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

var algorithms = []limiter.Algorithm{limiter.TokenBucket, limiter.SlidingWindow, limiter.FixedWindow, limiter.SlidingLog}

var periods = []time.Duration{time.Second, 30 * time.Second, 5 * time.Minute, time.Hour, 24 * time.Hour}

// Run runs the conformance suite against the stores newStore returns.
func Run(t *testing.T, newStore NewStore) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			for _, p := range periods {
				t.Run(p.String(), func(t *testing.T) {
					t.Run("Admission", func(t *testing.T) { testAdmission(t, newStore, alg, p) })
					t.Run("Cost", func(t *testing.T) { testCost(t, newStore, alg, p) })
					t.Run("Peek", func(t *testing.T) { testPeek(t, newStore, alg, p) })
					t.Run("CostAboveQuota", func(t *testing.T) { testCostAboveQuota(t, newStore, alg, p) })
					t.Run("RetryAndReset", func(t *testing.T) { testRetryAndReset(t, newStore, alg, p) })
					t.Run("Reference", func(t *testing.T) { testReference(t, newStore, alg, p) })
				})
			}
			t.Run("Values", func(t *testing.T) { testValues(t, newStore, alg) })
			t.Run("Bunched", func(t *testing.T) { testBunched(t, newStore, alg) })
			t.Run("AllOrNothing", func(t *testing.T) { testAllOrNothing(t, newStore, alg) })
			t.Run("Independent", func(t *testing.T) { testIndependent(t, newStore, alg) })
			t.Run("Reset", func(t *testing.T) { testReset(t, newStore, alg) })
			t.Run("Expiry", func(t *testing.T) { testExpiry(t, newStore, alg) })
			t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore, alg) })
		})
	}
	t.Run("BurstAndSustained", func(t *testing.T) { testBurstAndSustained(t, newStore) })
	t.Run("SameKeyTwice", func(t *testing.T) { testSameKeyTwice(t, newStore) })
	t.Run("ConcurrentAllOrNothing", func(t *testing.T) { testConcurrentAllOrNothing(t, newStore) })
	t.Run("Context", func(t *testing.T) { testContext(t, newStore) })
}

// env is one subtest's store, clock and key namespace.
type env struct {
	t   *testing.T
	s   limiter.Store
	now time.Time
	tag string
}

func newEnv(t *testing.T, newStore NewStore) *env {
	e := &env{t: t, now: base, tag: "t"}
	e.s = newStore(t, func() time.Time { return e.now })
	return e
}

// key returns a key unique to the subtest, so stores may share a backend.
func (e *env) key(k string) string { return e.t.Name() + "/" + k }

// at sets the clock to base + d.
func (e *env) at(d time.Duration) { e.now = base.Add(d) }

// take calls Take and fails the test on error.
func (e *env) take(tag string, hits ...limiter.Hit) (bool, []limiter.Status) {
	e.t.Helper()
	out := make([]limiter.Status, len(hits))
	ok, err := e.s.Take(context.Background(), tag, hits, out)
	if err != nil {
		e.t.Fatalf("Take(%v) at %v: %v", hits, e.now.Sub(base), err)
	}
	if ok != allAllowed(out) {
		e.t.Fatalf("Take(%v) at %v = %v with statuses %+v: allowed must be the AND of the statuses", hits, e.now.Sub(base), ok, out)
	}
	return ok, out
}

// one takes cost from a single limit.
func (e *env) one(key string, l limiter.Limit, cost int64) limiter.Status {
	e.t.Helper()
	_, out := e.take(e.tag, limiter.Hit{Key: key, Limit: l, Cost: cost})
	return out[0]
}

func allAllowed(out []limiter.Status) bool {
	for _, s := range out {
		if !s.Allowed {
			return false
		}
	}
	return true
}

// quota is what the limit admits at once from a full counter.
func quota(l limiter.Limit) int64 {
	if l.Algorithm == limiter.TokenBucket && l.Burst > 0 {
		return l.Burst
	}
	return l.Limit
}

func limitOf(alg limiter.Algorithm, n int64, p time.Duration) limiter.Limit {
	return limiter.Limit{Name: "l", Algorithm: alg, Limit: n, Period: p}
}

func testAdmission(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 7, p)
	k := e.key("k")
	for i := range int64(7) {
		s := e.one(k, l, 1)
		if !s.Allowed || s.Remaining != 6-i || s.Limit != 7 || s.RetryAfter != 0 {
			t.Fatalf("take %d: got %+v, want allowed, remaining %d, limit 7, no retry", i+1, s, 6-i)
		}
	}
	for i := range 3 {
		s := e.one(k, l, 1)
		if s.Allowed || s.Remaining != 0 || s.RetryAfter <= 0 {
			t.Fatalf("take %d over the limit: got %+v, want refused, remaining 0, positive retry", 8+i, s)
		}
	}
	if alg == limiter.TokenBucket {
		// A burst above the rate: 20 at once, then the rate.
		l := limiter.Limit{Name: "b", Algorithm: alg, Limit: 4, Period: p, Burst: 20}
		k := e.key("burst")
		for i := range int64(20) {
			if s := e.one(k, l, 1); !s.Allowed || s.Limit != 20 || s.Remaining != 19-i {
				t.Fatalf("burst take %d: got %+v, want allowed, limit 20, remaining %d", i+1, s, 19-i)
			}
		}
		s := e.one(k, l, 1)
		if s.Allowed || s.RetryAfter != p/4 {
			t.Fatalf("take after the burst: got %+v, want refused with retry %v", s, p/4)
		}
		e.at(p / 4)
		if s := e.one(k, l, 1); !s.Allowed || s.Remaining != 0 {
			t.Fatalf("take one interval later: got %+v, want allowed, remaining 0", s)
		}
	}
}

func testCost(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 10, p)
	k := e.key("k")
	for i, want := range []struct {
		cost      int64
		allowed   bool
		remaining int64
	}{{3, true, 7}, {3, true, 4}, {3, true, 1}, {3, false, 1}, {2, false, 1}, {1, true, 0}, {1, false, 0}} {
		s := e.one(k, l, want.cost)
		if s.Allowed != want.allowed || s.Remaining != want.remaining {
			t.Fatalf("step %d cost %d: got allowed %v remaining %d, want %v %d", i, want.cost, s.Allowed, s.Remaining, want.allowed, want.remaining)
		}
	}
}

func testPeek(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 5, p)
	k := e.key("k")
	if s := e.one(k, l, 0); !s.Allowed || s.Remaining != 5 || s.ResetAfter != 0 || s.RetryAfter != 0 {
		t.Fatalf("peek at an absent key: got %+v, want allowed, remaining 5, no reset, no retry", s)
	}
	e.one(k, l, 2)
	for range 3 {
		if s := e.one(k, l, 0); !s.Allowed || s.Remaining != 3 {
			t.Fatalf("peek after taking 2: got %+v, want allowed, remaining 3", s)
		}
	}
	e.one(k, l, 3)
	if s := e.one(k, l, 0); !s.Allowed || s.Remaining != 0 || s.ResetAfter <= 0 {
		t.Fatalf("peek at the limit: got %+v, want allowed (not over), remaining 0, positive reset", s)
	}
	if s := e.one(k, l, 1); s.Allowed {
		t.Fatalf("take after peeks: got %+v, want refused", s)
	}
}

func testCostAboveQuota(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 5, p)
	k := e.key("k")
	for _, d := range []time.Duration{0, p / 3, 5 * p} {
		e.at(d)
		s := e.one(k, l, 6)
		if s.Allowed || s.RetryAfter < p || s.RetryAfter > 2*p {
			t.Fatalf("cost 6 of 5 at %v: got %+v, want refused with a retry in [%v, %v]", d, s, p, 2*p)
		}
		if s.Remaining != 5 {
			t.Fatalf("cost 6 of 5 at %v: remaining %d, want 5 (nothing consumed)", d, s.Remaining)
		}
	}
	if s := e.one(k, l, 5); !s.Allowed {
		t.Fatalf("cost 5 of 5 after refusals: got %+v, want allowed", s)
	}
}

// testRetryAndReset checks RetryAfter and ResetAfter to the microsecond: a refused hit is
// still refused a microsecond before RetryAfter and allowed at it; a counter is below its
// quota a microsecond before ResetAfter and full at it. It also shows that refused hits
// consume nothing, since the retries come in between.
func testRetryAndReset(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	for _, start := range []time.Duration{0, p / 3, p - time.Microsecond} {
		for _, cost := range []int64{1, 4} {
			t.Run(fmt.Sprintf("start%v/cost%d", start, cost), func(t *testing.T) {
				e := newEnv(t, newStore)
				l := limitOf(alg, 10, p)
				k := e.key("k")
				e.at(start)
				e.one(k, l, 8)
				// Take until refused, a microsecond apart.
				var s limiter.Status
				for i := range 20 {
					e.at(start + p/7 + time.Duration(i)*time.Microsecond)
					if s = e.one(k, l, cost); !s.Allowed {
						break
					}
				}
				if s.Allowed {
					t.Fatalf("setup: 20 takes of %d after 8 of 10 all allowed: %+v", cost, s)
				}
				if s.RetryAfter <= 0 || s.RetryAfter > 2*p {
					t.Fatalf("got retry %v, want in (0, %v]", s.RetryAfter, 2*p)
				}
				refusedAt := e.now
				e.now = refusedAt.Add(s.RetryAfter - time.Microsecond)
				if s2 := e.one(k, l, cost); s2.Allowed {
					t.Fatalf("1µs before RetryAfter %v: got allowed %+v, want refused", s.RetryAfter, s2)
				}
				e.now = refusedAt.Add(s.RetryAfter)
				s3 := e.one(k, l, cost)
				if !s3.Allowed {
					t.Fatalf("at RetryAfter %v: got refused %+v, want allowed", s.RetryAfter, s3)
				}
				if s3.ResetAfter <= 0 {
					t.Fatalf("after a take: got reset %v, want positive", s3.ResetAfter)
				}
				tookAt := e.now
				e.now = tookAt.Add(s3.ResetAfter - time.Microsecond)
				if s4 := e.one(k, l, 0); s4.Remaining >= quota(l) {
					t.Fatalf("1µs before ResetAfter %v: remaining %d, want below %d", s3.ResetAfter, s4.Remaining, quota(l))
				}
				e.now = tookAt.Add(s3.ResetAfter)
				if s5 := e.one(k, l, 0); s5.Remaining != quota(l) || s5.ResetAfter != 0 {
					t.Fatalf("at ResetAfter %v: got %+v, want remaining %d, no reset", s3.ResetAfter, s5, quota(l))
				}
			})
		}
	}
}

// testValues checks Remaining, ResetAfter and RetryAfter against values worked out by hand
// for a 10 per second limit.
func testValues(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	ms := time.Millisecond
	type step struct {
		at   time.Duration
		cost int64
		want limiter.Status
	}
	steps := map[limiter.Algorithm][]step{
		// One token per 100 ms.
		limiter.TokenBucket: {
			{0, 10, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 1000 * ms}},
			{50 * ms, 1, limiter.Status{Limit: 10, Remaining: 0, ResetAfter: 950 * ms, RetryAfter: 50 * ms}},
			{250 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 2, ResetAfter: 750 * ms}},
			{250 * ms, 3, limiter.Status{Limit: 10, Remaining: 2, ResetAfter: 750 * ms, RetryAfter: 50 * ms}},
			{250 * ms, 2, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 950 * ms}},
		},
		// Buckets of 100 ms; the oldest bucket of the window weighs how much of it still
		// overlaps, but is never discounted by more than floor(10/10) = 1 unit.
		limiter.SlidingWindow: {
			// Counted until the bucket [200ms, 300ms) leaves the window at 1.3 s.
			{200 * ms, 6, limiter.Status{Allowed: true, Limit: 10, Remaining: 4, ResetAfter: 1100 * ms}},
			// Half of the oldest bucket overlaps: the weight says 3, the slack keeps 6-1 = 5.
			{1250 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 5, ResetAfter: 50 * ms}},
			{1250 * ms, 5, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 1050 * ms}},
			// 5+5+1 > 10 until the 6 leave the window at 1.3 s.
			{1250 * ms, 1, limiter.Status{Limit: 10, Remaining: 0, ResetAfter: 1050 * ms, RetryAfter: 50 * ms}},
			{1300 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 5, ResetAfter: 1000 * ms}},
			// The 5 of [1.2s, 1.3s) are the oldest bucket from 2.2 s: at 2.25 s they weigh
			// max(ceil(5*0.5), 5-1) = 4.
			{2250 * ms, 6, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 1050 * ms}},
			// At 2.26 s: 6 + max(ceil(5*0.4), 4) = 10; the 5 leave at 2.3 s.
			{2260 * ms, 1, limiter.Status{Limit: 10, Remaining: 0, ResetAfter: 1040 * ms, RetryAfter: 40 * ms}},
			{2300 * ms, 1, limiter.Status{Allowed: true, Limit: 10, Remaining: 3, ResetAfter: 1100 * ms}},
			// At 3.25 s the 6 are the oldest bucket: max(ceil(6*0.5), 6-1) = 5, plus the 1.
			{3250 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 4, ResetAfter: 150 * ms}},
			// At 3.35 s the 1 is the oldest bucket, within the slack: max(ceil(1*0.5), 0) = 1.
			{3350 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 9, ResetAfter: 50 * ms}},
			{3400 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 10}},
		},
		limiter.FixedWindow: {
			{300 * ms, 6, limiter.Status{Allowed: true, Limit: 10, Remaining: 4, ResetAfter: 700 * ms}},
			{900 * ms, 5, limiter.Status{Limit: 10, Remaining: 4, ResetAfter: 100 * ms, RetryAfter: 100 * ms}},
			{1000 * ms, 10, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 1000 * ms}},
			{1999 * ms, 1, limiter.Status{Limit: 10, Remaining: 0, ResetAfter: 1 * ms, RetryAfter: 1 * ms}},
		},
		limiter.SlidingLog: {
			{100 * ms, 4, limiter.Status{Allowed: true, Limit: 10, Remaining: 6, ResetAfter: 1000 * ms}},
			{600 * ms, 6, limiter.Status{Allowed: true, Limit: 10, Remaining: 0, ResetAfter: 1000 * ms}},
			// The 4 taken at 100 ms leave at 1.1 s.
			{900 * ms, 3, limiter.Status{Limit: 10, Remaining: 0, ResetAfter: 700 * ms, RetryAfter: 200 * ms}},
			{1100 * ms, 0, limiter.Status{Allowed: true, Limit: 10, Remaining: 4, ResetAfter: 500 * ms}},
			// 5 more need one of the 600 ms ones to leave: at 1.6 s.
			{1100 * ms, 5, limiter.Status{Limit: 10, Remaining: 4, ResetAfter: 500 * ms, RetryAfter: 500 * ms}},
		},
	}
	e := newEnv(t, newStore)
	l := limitOf(alg, 10, time.Second)
	k := e.key("k")
	for i, st := range steps[alg] {
		e.at(st.at)
		if diff := cmp.Diff(st.want, e.one(k, l, st.cost)); diff != "" {
			t.Errorf("step %d (cost %d at %v): status mismatch (-want +got):\n%s", i, st.cost, st.at, diff)
		}
	}
}

// WindowBound is the most a limit of each algorithm admits in one interval of length Period,
// as the README documents it: L for the sliding log; L + floor(L/10) for the sliding window
// (10 buckets, the oldest discounted by at most floor(L/10)); 2L for the fixed window (L at the
// end of one window, L at the start of the next); Burst + L - 1 for the token bucket (a full
// bucket, then the refill of a period less a microsecond: 2L - 1 with the default burst).
func WindowBound(l limiter.Limit) int64 {
	switch l.Algorithm {
	case limiter.TokenBucket:
		return quota(l) + l.Limit - 1
	case limiter.SlidingWindow:
		return l.Limit + l.Limit/10
	case limiter.FixedWindow:
		return 2 * l.Limit
	}
	return l.Limit
}

// testBunched offers 2L requests bunched at two instants a < b less than a period apart, on a
// fixed grid of pairs around a window edge: a just before the edge, b anywhere up to a period
// later. What is admitted at a and at b lies in one interval of length Period, so it must stay
// within WindowBound; and for every algorithm some pair of the grid reaches the bound exactly
// (the sliding window's slack included), so the bound is the algorithm's, not the grid's.
func testBunched(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	const lim = 20
	p := time.Second
	l := limitOf(alg, lim, p)
	bound := WindowBound(l)
	edge := 10 * p
	// Take at one instant until refused: admission at a fixed instant is monotone.
	bunch := func(k string) int64 {
		var n int64
		for n <= 2*lim {
			if s := e.one(k, l, 1); !s.Allowed {
				break
			}
			n++
		}
		return n
	}
	type pair struct {
		before, gap   time.Duration
		first, second int64
	}
	var worst pair
	for i := range 11 {
		before := time.Microsecond
		if i > 0 {
			before = time.Duration(i) * p / 20
		}
		for j := 1; j <= 20; j++ {
			gap := time.Duration(j) * p / 20
			if j == 20 {
				gap = p - time.Microsecond
			}
			k := e.key(fmt.Sprintf("%d/%d", i, j))
			e.at(edge - before)
			first := bunch(k)
			e.at(edge - before + gap)
			second := bunch(k)
			if first+second > worst.first+worst.second {
				worst = pair{before, gap, first, second}
			}
		}
	}
	if n := worst.first + worst.second; n != bound {
		t.Fatalf("most admitted in one period over the grid: %d (%d at %v before an edge, %d %v later), want the bound %d",
			n, worst.first, worst.before, worst.second, worst.gap, bound)
	}
}

// testReference drives one key with a deterministic pseudo-random workload over a grid of
// instants and compares every decision with an independent model of the algorithm computed
// from the log of admitted hits, then checks the algorithm's guarantee over every interval.
func testReference(t *testing.T, newStore NewStore, alg limiter.Algorithm, p time.Duration) {
	e := newEnv(t, newStore)
	l := limiter.Limit{Name: "r", Algorithm: alg, Limit: 12, Period: p}
	if alg == limiter.TokenBucket {
		l.Burst = 5
	}
	k := e.key("k")
	rng := rand.New(rand.NewPCG(uint64(p), uint64(alg)))
	m := newModel(l)
	var at time.Duration
	for i := range 600 {
		// Steps from a microsecond to a third of a period, clustered to hit boundaries.
		switch rng.IntN(4) {
		case 0:
			at += time.Duration(1+rng.IntN(3)) * time.Microsecond
		case 1:
			at += p / time.Duration(3+rng.IntN(30))
		default:
			at += p / time.Duration(40+rng.IntN(200))
		}
		cost := int64(rng.IntN(4))
		e.at(at)
		got := e.one(k, l, cost)
		want := m.allowed(at, cost)
		if got.Allowed != want {
			t.Fatalf("request %d cost %d at %v: got allowed %v, want %v (model)", i, cost, at, got.Allowed, want)
		}
		if want && cost > 0 {
			m.add(at, cost)
		}
	}
	m.checkGuarantee(t)
}

// model is an independent reference for one limit: it keeps every admitted hit.
type model struct {
	l    limiter.Limit
	hits []modelHit
	// tokens and last are the token bucket's exact state.
	tokens *big.Rat
	last   time.Duration
}

type modelHit struct {
	at   time.Duration
	cost int64
}

func newModel(l limiter.Limit) *model {
	return &model{l: l, tokens: new(big.Rat).SetInt64(quota(l))}
}

// sum is the cost admitted in [from, to).
func (m *model) sum(from, to time.Duration) int64 {
	var n int64
	for _, h := range m.hits {
		if h.at >= from && h.at < to {
			n += h.cost
		}
	}
	return n
}

func (m *model) refill(at time.Duration) *big.Rat {
	add := new(big.Rat).SetFrac64(int64(at-m.last)*m.l.Limit, int64(m.l.Period))
	tok := new(big.Rat).Add(m.tokens, add)
	if full := new(big.Rat).SetInt64(quota(m.l)); tok.Cmp(full) > 0 {
		tok = full
	}
	return tok
}

func (m *model) allowed(at time.Duration, cost int64) bool {
	p, lim := m.l.Period, m.l.Limit
	switch m.l.Algorithm {
	case limiter.TokenBucket:
		return m.refill(at).Cmp(new(big.Rat).SetInt64(cost)) >= 0
	case limiter.FixedWindow:
		w := at - at%p
		return m.sum(w, w+p)+cost <= lim
	case limiter.SlidingLog:
		return m.sum(at-p+1, at+1)+cost <= lim
	default:
		// Ten buckets of q = ceil(P/10); the oldest one, which the window [at-P, at) overlaps
		// only partly, weighted by the overlap quantized to granules of ceil(q/2^20) µs, but
		// never discounted by more than floor(L/10).
		qm := (int64(p/time.Microsecond) + 9) / 10
		q := time.Duration(qm) * time.Microsecond
		w := at - at%q
		full, old := m.sum(w-9*q, w+q), m.sum(w-10*q, w-9*q)
		g := (qm + (1 << 20) - 1) >> 20
		gs := (qm + g - 1) / g
		j := int64((at-w)/time.Microsecond) / g
		est := full + max((old*(gs-j)+gs-1)/gs, old-lim/10)
		return est+cost <= lim
	}
}

func (m *model) add(at time.Duration, cost int64) {
	if m.l.Algorithm == limiter.TokenBucket {
		m.tokens = new(big.Rat).Sub(m.refill(at), new(big.Rat).SetInt64(cost))
		m.last = at
	}
	m.hits = append(m.hits, modelHit{at, cost})
}

// checkGuarantee sweeps every interval that starts at an admitted hit:
//   - token bucket: at most Burst + Limit*d/Period in any closed interval of length d;
//   - sliding log: at most Limit in any half-open interval of length Period;
//   - fixed window: at most Limit in each aligned window;
//   - sliding window: at most Limit in each aligned window (ten whole buckets), and at most
//     Limit + floor(Limit/10) in any interval of length Period.
func (m *model) checkGuarantee(t *testing.T) {
	t.Helper()
	l := m.l
	admitted := int64(0)
	for i, h := range m.hits {
		admitted += h.cost
		var n int64
		for _, h2 := range m.hits[i:] {
			n += h2.cost
			d := h2.at - h.at
			switch l.Algorithm {
			case limiter.TokenBucket:
				if bound := quota(l) + int64(d)*l.Limit/int64(l.Period); n > bound {
					t.Fatalf("%d admitted in [%v, %v]: over the bucket's bound %d", n, h.at, h2.at, bound)
				}
			case limiter.SlidingLog:
				if d < l.Period && n > l.Limit {
					t.Fatalf("%d admitted in [%v, %v]: over %d per %v", n, h.at, h2.at, l.Limit, l.Period)
				}
			case limiter.SlidingWindow:
				if bound := l.Limit + l.Limit/10; d < l.Period && n > bound {
					t.Fatalf("%d admitted in [%v, %v]: over %d + %d per %v", n, h.at, h2.at, l.Limit, l.Limit/10, l.Period)
				}
			}
		}
		if l.Algorithm != limiter.TokenBucket {
			w := h.at - h.at%l.Period
			if n := m.sum(w, w+l.Period); n > l.Limit {
				t.Fatalf("%d admitted in the window at %v: over %d", n, w, l.Limit)
			}
		}
	}
	if admitted < 2*l.Limit {
		t.Fatalf("only %d units admitted over the walk: the workload did not reach the limit", admitted)
	}
}

func testAllOrNothing(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	a := limitOf(alg, 5, time.Minute)
	b := limitOf(alg, 2, time.Second)
	c := limitOf(alg, 9, time.Hour)
	ka, kb, kc := e.key("a"), e.key("b"), e.key("c")
	hits := []limiter.Hit{{Key: ka, Limit: a, Cost: 1}, {Key: kb, Limit: b, Cost: 1}, {Key: kc, Limit: c, Cost: 1}}
	for i := range 2 {
		if ok, out := e.take(e.tag, hits...); !ok {
			t.Fatalf("take %d of 3 limits: refused %+v", i+1, out)
		}
	}
	ok, out := e.take(e.tag, hits...)
	if ok {
		t.Fatalf("third take with b at 2 of 2: allowed %+v", out)
	}
	want := []limiter.Status{
		{Allowed: true, Limit: 5, Remaining: 3}, // as a peek: nothing consumed
		{Allowed: false, Limit: 2, Remaining: 0},
		{Allowed: true, Limit: 9, Remaining: 7},
	}
	if diff := cmp.Diff(want, out, cmp.Comparer(func(x, y limiter.Status) bool {
		return x.Allowed == y.Allowed && x.Limit == y.Limit && x.Remaining == y.Remaining
	})); diff != "" {
		t.Fatalf("statuses of the refused take (-want +got):\n%s", diff)
	}
	if s := e.one(ka, a, 0); s.Remaining != 3 {
		t.Fatalf("a after the refused take: remaining %d, want 3", s.Remaining)
	}
	if s := e.one(kc, c, 0); s.Remaining != 7 {
		t.Fatalf("c after the refused take: remaining %d, want 7", s.Remaining)
	}
	// A refused first hit, allowed later ones: nothing consumed either.
	ok, _ = e.take(e.tag, hits[1], hits[0], hits[2])
	if ok || e.one(ka, a, 0).Remaining != 3 || e.one(kc, c, 0).Remaining != 7 {
		t.Fatalf("refused take with b first consumed a or c")
	}
}

func testIndependent(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 3, time.Minute)
	k1, k2 := e.key("one"), e.key("two")
	e.one(k1, l, 3)
	if s := e.one(k1, l, 1); s.Allowed {
		t.Fatalf("k1 over its limit: allowed")
	}
	if s := e.one(k2, l, 1); !s.Allowed || s.Remaining != 2 {
		t.Fatalf("k2 after k1 exhausted: got %+v, want allowed, remaining 2", s)
	}
	_, out := e.take("other-tag", limiter.Hit{Key: k1, Limit: l, Cost: 1})
	if !out[0].Allowed || out[0].Remaining != 2 {
		t.Fatalf("k1 under another tag: got %+v, want allowed, remaining 2", out[0])
	}
}

func testReset(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	r, ok := e.s.(limiter.Resetter)
	if !ok {
		t.Skip("store does not implement limiter.Resetter")
	}
	l := limitOf(alg, 4, time.Hour)
	k, other := e.key("k"), e.key("other")
	e.one(k, l, 4)
	e.one(other, l, 4)
	if err := r.Reset(context.Background(), e.tag, k); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if s := e.one(k, l, 0); s.Remaining != 4 || s.ResetAfter != 0 {
		t.Fatalf("after Reset: got %+v, want remaining 4, no reset", s)
	}
	if s := e.one(other, l, 0); s.Remaining != 0 {
		t.Fatalf("another key after Reset of k: remaining %d, want 0", s.Remaining)
	}
	if err := r.Reset(context.Background(), e.tag, e.key("absent")); err != nil {
		t.Fatalf("Reset of an absent key: %v", err)
	}
}

func testExpiry(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	l := limitOf(alg, 4, time.Second)
	k := e.key("k")
	e.at(500 * time.Millisecond)
	e.one(k, l, 4)
	e.at(1000 * time.Hour)
	if s := e.one(k, l, 0); s.Remaining != 4 || s.ResetAfter != 0 {
		t.Fatalf("long after the last take: got %+v, want remaining 4, no reset", s)
	}
	if s := e.one(k, l, 4); !s.Allowed {
		t.Fatalf("full take long after: got %+v, want allowed", s)
	}
}

func testConcurrent(t *testing.T, newStore NewStore, alg limiter.Algorithm) {
	e := newEnv(t, newStore)
	const n, workers, each = 300, 8, 60
	l := limitOf(alg, n, time.Hour)
	k := e.key("k")
	e.at(17 * time.Minute)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			out := make([]limiter.Status, 1)
			hits := []limiter.Hit{{Key: k, Limit: l, Cost: 1}}
			for range each {
				ok, err := e.s.Take(context.Background(), e.tag, hits, out)
				if err != nil {
					errs <- err
					return
				}
				if ok {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Take: %v", err)
	}
	if got := admitted.Load(); got != n {
		t.Fatalf("%d goroutines x %d takes of a limit of %d: got %d admitted, want %d", workers, each, n, got, n)
	}
}

// testBurstAndSustained puts a burst limit (10 per second) and a sustained one (100 per
// hour) on one request, as a descriptor with two limits does.
func testBurstAndSustained(t *testing.T, newStore NewStore) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			e := newEnv(t, newStore)
			burst := limiter.Limit{Name: "burst", Algorithm: alg, Limit: 10, Period: time.Second}
			sustained := limiter.Limit{Name: "sustained", Algorithm: alg, Limit: 100, Period: time.Hour}
			hits := []limiter.Hit{{Key: e.key("burst"), Limit: burst, Cost: 1}, {Key: e.key("sustained"), Limit: sustained, Cost: 1}}
			total := 0
			// 25 requests at the start of every second for 20 seconds: 10 per second pass until
			// 100 are spent. (Every other second for the sliding window, whose previous window
			// would still weigh fully at the start of the next second.)
			step := 1
			if alg == limiter.SlidingWindow {
				step = 2
			}
			for round := range 20 {
				sec := round * step
				perSecond := 0
				for i := range 25 {
					e.at(time.Duration(sec)*time.Second + time.Duration(i)*time.Millisecond)
					if ok, _ := e.take(e.tag, hits...); ok {
						perSecond++
					}
				}
				want := 10
				if round >= 10 {
					want = 0
				}
				if perSecond != want {
					t.Fatalf("second %d: got %d admitted, want %d", sec, perSecond, want)
				}
				total += perSecond
			}
			if total != 100 {
				t.Fatalf("got %d admitted in total, want 100", total)
			}
			_, out := e.take(e.tag, hits...)
			if !out[0].Allowed || out[1].Allowed || out[1].Remaining != 0 {
				t.Fatalf("after the sustained limit is spent: got %+v, want burst allowed, sustained refused", out)
			}
		})
	}
}

// testSameKeyTwice sends two hits on one counter in one Take: the second sees the first.
func testSameKeyTwice(t *testing.T, newStore NewStore) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			e := newEnv(t, newStore)
			l := limitOf(alg, 5, time.Minute)
			k := e.key("k")
			ok, out := e.take(e.tag, limiter.Hit{Key: k, Limit: l, Cost: 2}, limiter.Hit{Key: k, Limit: l, Cost: 2})
			if !ok || out[0].Remaining != 3 || out[1].Remaining != 1 {
				t.Fatalf("two hits of 2 on one key of 5: got %v %+v, want allowed, remaining 3 then 1", ok, out)
			}
			if ok, _ := e.take(e.tag, limiter.Hit{Key: k, Limit: l, Cost: 1}, limiter.Hit{Key: k, Limit: l, Cost: 1}); ok {
				t.Fatalf("two hits of 1 on one key with 1 left: allowed")
			}
			if s := e.one(k, l, 0); s.Remaining != 1 {
				t.Fatalf("after the refused take: remaining %d, want 1", s.Remaining)
			}
		})
	}
}

// testConcurrentAllOrNothing races requests on two limits (a: 150, b: 40) with requests on a
// alone: the 160 refusals of b must not consume a.
func testConcurrentAllOrNothing(t *testing.T, newStore NewStore) {
	e := newEnv(t, newStore)
	a := limiter.Limit{Name: "a", Algorithm: limiter.FixedWindow, Limit: 150, Period: time.Hour}
	b := limiter.Limit{Name: "b", Algorithm: limiter.TokenBucket, Limit: 40, Period: time.Hour}
	ka, kb := e.key("a"), e.key("b")
	var both, aOnly atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			// 4 workers x 50 on a and b, 4 x 25 on a alone.
			hits := []limiter.Hit{{Key: ka, Limit: a, Cost: 1}, {Key: kb, Limit: b, Cost: 1}}
			n := 50
			if w%2 == 1 {
				hits, n = hits[:1], 25
			}
			out := make([]limiter.Status, len(hits))
			for range n {
				ok, err := e.s.Take(context.Background(), e.tag, hits, out)
				if err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if ok && len(hits) == 2 {
					both.Add(1)
				} else if ok {
					aOnly.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if both.Load() != 40 {
		t.Errorf("requests on a and b: got %d admitted, want 40", both.Load())
	}
	if aOnly.Load() != 100 {
		t.Errorf("requests on a alone: got %d admitted, want 100", aOnly.Load())
	}
	if s := e.one(ka, a, 0); s.Remaining != 10 {
		t.Errorf("a's remaining: got %d, want 10 (150 - 40 - 100)", s.Remaining)
	}
}

func testContext(t *testing.T, newStore NewStore) {
	e := newEnv(t, newStore)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := make([]limiter.Status, 1)
	_, err := e.s.Take(ctx, e.tag, []limiter.Hit{{Key: e.key("k"), Limit: limitOf(limiter.FixedWindow, 1, time.Second), Cost: 1}}, out)
	if err == nil {
		t.Fatalf("Take with a cancelled context: got no error")
	}
}
