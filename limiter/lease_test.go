package limiter_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/wardenhq/warden/fielderr"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/limitertest"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// takeCounter counts the Takes that reach a store (each a round trip for Redis).
type takeCounter struct {
	limiter.Store
	n atomic.Int64
}

func (c *takeCounter) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	c.n.Add(1)
	return c.Store.Take(ctx, tag, hits, out)
}

func (c *takeCounter) NonBlocking() bool {
	nb, ok := c.Store.(limiter.NonBlocking)
	return ok && nb.NonBlocking()
}

func leasedDomain(alg limiter.Algorithm, limit int64, unit string, lease *limiter.Lease) limiter.Domain {
	return limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "k", RateLimit: &limiter.RateLimit{Name: "k", Algorithm: alg, Unit: unit, RequestsPerUnit: limit, Lease: lease}},
	}}
}

func req(cost int64, keys ...string) limiter.Request {
	r := limiter.Request{Domain: "d", Cost: cost}
	for _, k := range keys {
		r.Descriptors = append(r.Descriptors, limiter.RequestDescriptor{Entries: []limiter.Entry{{Key: k, Value: "v"}}})
	}
	return r
}

// TestLeaseBurst runs 4 replicas (4 Limiters, each on its own store client) sharing one
// counter, with a burst of 2*limit unit-cost requests from 64 goroutines. The stated bounds,
// with N = 4, L = 1000, Units = 50:
//   - over: no more than the store admits, L, for fixed_window (a slice is used within its
//     window) and for token_bucket L + rate*(d+TTL) over the test's span d; with a rate of
//     1000 per hour and the burst done within 3.6s, the store itself emits no new unit, so L
//     exactly;
//   - under: after the burst each replica holds at most Units-1 unused units, so at least
//     L - N*(Units-1) were admitted; then each replica is drained until it refuses, and the
//     total is exactly L;
//   - store calls: most decisions are local.
func TestLeaseBurst(t *testing.T) {
	const (
		n       = 4
		limit   = 1000
		units   = 50
		workers = 64
	)
	srv := redistest.Start(t)
	stores := map[string]func(t *testing.T) [n]limiter.Store{
		"memory": func(t *testing.T) (s [n]limiter.Store) {
			m := memstore.New(memstore.Options{})
			for i := range s {
				s[i] = m
			}
			return s
		},
		"redis": func(t *testing.T) (s [n]limiter.Store) {
			c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
			t.Cleanup(func() { _ = c.Close() })
			if err := c.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			for i := range s {
				rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
				st, err := redisstore.New(rc, redisstore.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = st.Close(); _ = rc.Close() })
				s[i] = st
			}
			return s
		},
	}
	for _, sname := range []string{"memory", "redis"} {
		for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.TokenBucket} {
			t.Run(sname+"/"+alg.String(), func(t *testing.T) {
				if alg == limiter.FixedWindow {
					// Keep the burst inside one hour window.
					if left := time.Hour - time.Duration(time.Now().UnixNano()%int64(time.Hour)); left < 20*time.Second {
						time.Sleep(left + time.Second)
					}
				}
				ss := stores[sname](t)
				reader := sdkmetric.NewManualReader()
				mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				dom := leasedDomain(alg, limit, "hour", &limiter.Lease{Units: units, TTL: 10 * time.Second})
				var ls [n]*limiter.Limiter
				var counters [n]*takeCounter
				for i := range ls {
					counters[i] = &takeCounter{Store: ss[i]}
					l, err := limiter.New(limiter.Config{Store: counters[i], Domains: []limiter.Domain{dom}, Meter: mp.Meter("test")})
					if err != nil {
						t.Fatal(err)
					}
					ls[i] = l
				}
				ctx := context.Background()
				var admitted, decided atomic.Int64
				start := time.Now()
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var res limiter.Result
						for range 2 * limit / workers {
							if err := ls[w%n].Check(ctx, req(1, "k"), &res); err != nil {
								t.Error(err)
								return
							}
							decided.Add(1)
							if res.Allowed {
								admitted.Add(1)
							}
						}
					}()
				}
				wg.Wait()
				d := time.Since(start)
				burst := admitted.Load()
				if d > 3*time.Second {
					t.Skipf("burst took %v: the token bucket may have emitted new units", d)
				}
				if burst > limit || burst < limit-n*(units-1) {
					t.Errorf("burst admitted %d, want %d..%d", burst, limit-n*(units-1), limit)
				}
				// Drain every replica's slice: each refuses once its slice and the store are
				// empty, and then admitted is exactly the limit.
				var res limiter.Result
				for _, l := range ls {
					for j := 0; ; j++ {
						if j > units {
							t.Fatalf("a replica admitted more than %d after the burst (%d in all)", units, admitted.Load())
						}
						if err := l.Check(ctx, req(1, "k"), &res); err != nil {
							t.Fatal(err)
						}
						decided.Add(1)
						if !res.Allowed {
							break
						}
						admitted.Add(1)
					}
				}
				if got := admitted.Load(); got != limit {
					t.Errorf("admitted %d in all (%d in the burst), want exactly %d", got, burst, limit)
				}
				var takes int64
				for _, c := range counters {
					takes += c.n.Load()
				}
				leased := limitertest.Sum(t, reader, "warden.ratelimit.decisions", attribute.String("source", "lease"))
				t.Logf("%d decisions, %d admitted (%d in the burst), %d store Takes, %d decided from a lease, burst %v",
					decided.Load(), admitted.Load(), burst, takes, leased, d)
				if leased < limit/2 {
					t.Errorf("%d decisions from a lease, want at least %d", leased, limit/2)
				}
				if admits := admitted.Load(); takes > admits/4 {
					t.Errorf("%d store Takes for %d admitted decisions: want at most a quarter", takes, admits)
				}
			})
		}
	}
}

// TestLeaseExpiry walks a clock: a slice is not used after its TTL, nor after the end of the
// fixed window it was counted in, and the units it still held stay counted in the store.
func TestLeaseExpiry(t *testing.T) {
	for _, tc := range []struct {
		alg   limiter.Algorithm
		ttl   time.Duration
		start time.Duration // into the test's grid; windows start at base
		after time.Duration // when the slice must no longer be used
	}{
		{limiter.TokenBucket, 100 * time.Millisecond, 0, 100 * time.Millisecond},
		{limiter.FixedWindow, 100 * time.Millisecond, 0, 100 * time.Millisecond},
		// 30ms before the end of a 1s window: the window's end comes before the TTL.
		{limiter.FixedWindow, 100 * time.Millisecond, 970 * time.Millisecond, time.Second},
	} {
		t.Run(tc.alg.String(), func(t *testing.T) {
			c := &clock{t: base}
			store := &takeCounter{Store: memstore.New(memstore.Options{Now: c.now})}
			dom := leasedDomain(tc.alg, 100, "second", &limiter.Lease{Units: 10, TTL: tc.ttl})
			l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{dom}, Now: c.now})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var res limiter.Result
			check := func(wantTakes int64, wantSrc limiter.Source) {
				t.Helper()
				if err := l.Check(ctx, req(1, "k"), &res); err != nil {
					t.Fatal(err)
				}
				if !res.Allowed || res.Statuses[0].Source != wantSrc || store.n.Load() != wantTakes {
					t.Fatalf("allowed %v source %v after %d Takes, want allowed from %v after %d",
						res.Allowed, res.Statuses[0].Source, store.n.Load(), wantSrc, wantTakes)
				}
			}
			c.at(tc.start)
			check(1, limiter.FromStore) // takes a slice of 10, uses 1
			if got := res.Statuses[0].Remaining; got != 99 {
				t.Errorf("remaining %d, want 99 (the store's 90 and the slice's 9)", got)
			}
			c.at(tc.after - time.Millisecond)
			check(1, limiter.FromLease)
			check(1, limiter.FromLease)
			c.at(tc.after)
			check(2, limiter.FromStore) // expired: a new slice; the 7 units left are stranded
			if tc.start == 0 {
				// Same window or bucket still: 20 units debited in the store.
				if got := res.Statuses[0].Remaining; got != 80+9 && tc.alg == limiter.FixedWindow {
					t.Errorf("remaining %d, want 89", got)
				}
			}
		})
	}
}

// TestLeaseMultiHit checks that a request is all or nothing across leased limits: when one
// limit refuses, the units the other took from its slice are given back.
func TestLeaseMultiHit(t *testing.T) {
	c := &clock{t: base}
	store := &takeCounter{Store: memstore.New(memstore.Options{Now: c.now})}
	dom := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "a", RateLimit: &limiter.RateLimit{Name: "a", Algorithm: limiter.FixedWindow, Unit: "hour", RequestsPerUnit: 100,
			Lease: &limiter.Lease{Units: 10, TTL: time.Minute}}},
		{Key: "b", RateLimit: &limiter.RateLimit{Name: "b", Algorithm: limiter.FixedWindow, Unit: "hour", RequestsPerUnit: 3,
			Lease: &limiter.Lease{Units: 3, TTL: time.Minute}}},
	}}
	l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{dom}, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var res limiter.Result
	for i := range 4 {
		if err := l.Check(ctx, req(1, "a", "b"), &res); err != nil {
			t.Fatal(err)
		}
		if want := i < 3; res.Allowed != want {
			t.Fatalf("request %d: allowed %v, want %v", i, res.Allowed, want)
		}
	}
	// 1 Take for both slices, then for the 4th request b's refill (whole slice, then exact
	// cost): 3 Takes. a's slice must have 7 units again, used without the store.
	if got := store.n.Load(); got != 3 {
		t.Fatalf("%d Takes, want 3", got)
	}
	for i := range 7 {
		if err := l.Check(ctx, req(1, "a"), &res); err != nil {
			t.Fatal(err)
		}
		if !res.Allowed || res.Statuses[0].Source != limiter.FromLease {
			t.Fatalf("a alone, request %d: allowed %v source %v, want allowed from the lease", i, res.Allowed, res.Statuses[0].Source)
		}
	}
	if got := store.n.Load(); got != 3 {
		t.Fatalf("%d Takes after a's 7 local requests, want 3", got)
	}
	// A multi-unit request larger than the slice asks for its exact cost.
	if err := l.Check(ctx, req(25, "a"), &res); err != nil || !res.Allowed {
		t.Fatalf("cost 25: allowed %v err %v", res.Allowed, err)
	}
	if got, want := res.Statuses[0].Remaining, int64(100-10-25); got != want {
		t.Errorf("remaining after cost 25: %d, want %d", got, want)
	}
}

func TestLeaseConfig(t *testing.T) {
	ok := limiter.Lease{Units: 10, TTL: 100 * time.Millisecond}
	for _, tc := range []struct {
		name  string
		alg   limiter.Algorithm
		lease limiter.Lease
		mod   func(*limiter.Descriptor)
		path  string
		want  string
	}{
		{"sliding window", limiter.SlidingWindow, ok, nil, ".lease", "only token_bucket and fixed_window"},
		{"sliding log", limiter.SlidingLog, ok, nil, ".lease", "only token_bucket and fixed_window"},
		{"no units", limiter.TokenBucket, limiter.Lease{TTL: time.Second}, nil, ".lease.units", "at least 1"},
		{"units over limit", limiter.FixedWindow, limiter.Lease{Units: 101, TTL: time.Second}, nil, ".lease.units", "more than the limit's quota 100"},
		{"units over burst", limiter.TokenBucket, limiter.Lease{Units: 60, TTL: time.Second},
			func(d *limiter.Descriptor) { d.RateLimit.Burst = 50 }, ".lease.units", "quota 50"},
		{"units over a tier", limiter.TokenBucket, ok,
			func(d *limiter.Descriptor) {
				d.RateLimit.Tiers = map[string]limiter.TierLimit{"free": {RequestsPerUnit: 5}}
			}, ".lease.units", "quota 5"},
		{"no ttl", limiter.TokenBucket, limiter.Lease{Units: 1}, nil, ".lease.ttl", "positive"},
		{"ttl over period", limiter.TokenBucket, limiter.Lease{Units: 1, TTL: 2 * time.Second},
			func(d *limiter.Descriptor) { d.RateLimit.Unit = "second" }, ".lease.ttl", "longer than the limit's period"},
		{"ttl over max", limiter.TokenBucket, limiter.Lease{Units: 1, TTL: 2 * time.Minute}, nil, ".lease.ttl", "at most 1m0s"},
		{"shadow", limiter.TokenBucket, ok, func(d *limiter.Descriptor) { d.ShadowMode = true }, ".lease", "shadow_mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := tc.lease
			d := limiter.Descriptor{Key: "k", RateLimit: &limiter.RateLimit{Algorithm: tc.alg, Unit: "hour", RequestsPerUnit: 100, Lease: &lease}}
			if tc.mod != nil {
				tc.mod(&d)
			}
			err := limiter.ValidateDomains([]limiter.Domain{{Name: "d", Descriptors: []limiter.Descriptor{d}}})
			var fe *fielderr.Error
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *fielderr.Error", err)
			}
			if want := "domains[0].descriptors[0].rate_limit" + tc.path; fe.Path != want || !strings.Contains(fe.Err.Error(), tc.want) {
				t.Errorf("got %s: %v, want %s: ...%s...", fe.Path, fe.Err, want, tc.want)
			}
		})
	}
	d := limiter.Descriptor{Key: "k", RateLimit: &limiter.RateLimit{Unit: "second", RequestsPerUnit: 100, Lease: &ok}}
	if err := limiter.ValidateDomains([]limiter.Domain{{Name: "d", Descriptors: []limiter.Descriptor{d}}}); err != nil {
		t.Errorf("valid lease: %v", err)
	}
}

// TestLeaseTokenBucketBound walks a clock through the token bucket's worst case: units leased
// just after the bucket was full are admitted up to TTL later, beside the units the bucket
// emitted meanwhile. With rate r = 10/s, B = 10, TTL = 1s and 4 replicas, an interval of
// d = 9ms admits 17 units: more than the exact bucket's B + r*d = 10.09, within the stated
// B + r*(d+TTL) = 20.09.
func TestLeaseTokenBucketBound(t *testing.T) {
	c := &clock{t: base}
	store := memstore.New(memstore.Options{Now: c.now})
	dom := leasedDomain(limiter.TokenBucket, 10, "second", &limiter.Lease{Units: 5, TTL: time.Second})
	var ls [4]*limiter.Limiter
	for i := range ls {
		l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{dom}, Now: c.now})
		if err != nil {
			t.Fatal(err)
		}
		ls[i] = l
	}
	ctx := context.Background()
	admit := func(l *limiter.Limiter, n int) (got int) {
		var res limiter.Result
		for range n {
			if err := l.Check(ctx, req(1, "k"), &res); err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				got++
			}
		}
		return got
	}
	// t = 0: replicas 0 and 1 each lease 5 units (the full bucket) and use 1.
	if got := admit(ls[0], 1) + admit(ls[1], 1); got != 2 {
		t.Fatalf("t=0: %d admitted, want 2", got)
	}
	// t = 990ms: the bucket has emitted 9 units; replicas 2 and 3 lease them (5, then 4 by
	// exact costs). Then, within 9ms, every replica spends what it holds.
	c.at(990 * time.Millisecond)
	in := admit(ls[2], 10) + admit(ls[3], 10)
	c.at(999 * time.Millisecond)
	in += admit(ls[0], 10) + admit(ls[1], 10)
	const r, b, ttl, d = 10.0, 10.0, 1.0, 0.009
	if exact := b + r*d; float64(in) <= exact {
		t.Errorf("%d admitted in %vs: want more than the exact bucket's %.2f (the case the bound is for)", in, d, exact)
	}
	if bound := b + r*(d+ttl); float64(in) > bound {
		t.Errorf("%d admitted in %vs: over the stated bound %.2f", in, d, bound)
	}
	if in != 17 {
		t.Errorf("%d admitted in [990ms, 999ms], want 17 (8 left from t=0, 9 emitted)", in)
	}
}

// TestLeaseSameKeyTwice sends requests whose two descriptors count on one key: the second hit
// must not wait for the refill the first one makes.
func TestLeaseSameKeyTwice(t *testing.T) {
	store := &takeCounter{Store: memstore.New(memstore.Options{})}
	dom := leasedDomain(limiter.FixedWindow, 100, "hour", &limiter.Lease{Units: 10, TTL: time.Minute})
	l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{dom}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res limiter.Result
	admitted := 0
	for range 60 {
		if err := l.Check(ctx, req(1, "k", "k"), &res); err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			admitted++
		}
	}
	if admitted != 50 {
		t.Errorf("%d requests of 2 units admitted, want 50", admitted)
	}
}

// TestLeaseCrossedRefills sends two-limit requests in both orders from many goroutines:
// requests that refill one slice and need the other's must not wait for each other.
func TestLeaseCrossedRefills(t *testing.T) {
	store := memstore.New(memstore.Options{})
	lease := &limiter.Lease{Units: 5, TTL: time.Minute}
	dom := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "a", RateLimit: &limiter.RateLimit{Name: "a", Algorithm: limiter.FixedWindow, Unit: "hour", RequestsPerUnit: 100000, Lease: lease}},
		{Key: "b", RateLimit: &limiter.RateLimit{Name: "b", Algorithm: limiter.FixedWindow, Unit: "hour", RequestsPerUnit: 100000, Lease: lease}},
	}}
	l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{dom}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req(1, "a", "b")
			if w%2 == 1 {
				r = req(1, "b", "a")
			}
			var res limiter.Result
			for range 500 {
				if err := l.Check(ctx, r, &res); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
