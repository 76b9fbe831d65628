package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testutil"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newClient returns a client on addr, closed in t.Cleanup.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr:                  addr,
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
		DialTimeout:           time.Second,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newStore returns a Store on client, closed in t.Cleanup (before the client: cleanups run
// last in, first out).
func newStore(t testing.TB, client redisstore.Client, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(client, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

var modes = []struct {
	name      string
	unbatched bool
}{{"batched", false}, {"unbatched", true}}

// paths are modes, and an unbatched store on a client that has take.lua run every lone Take
// (one hit, of any algorithm) on its general path (redisstore.GeneralPath): in the modes, a
// lone token-bucket or fixed-window Take takes the script's short path.
var paths = []struct {
	name               string
	unbatched, general bool
}{{"batched", false, false}, {"unbatched", true, false}, {"general", true, true}}

// pathClient returns client, or client through redisstore.GeneralPath if general.
func pathClient(client *redis.Client, general bool) redisstore.Client {
	if general {
		return redisstore.GeneralPath(client)
	}
	return client
}

// grid is a clock that a test moves by hand.
type grid struct {
	mu sync.Mutex
	t  time.Time
}

func (g *grid) Now() time.Time  { g.mu.Lock(); defer g.mu.Unlock(); return g.t }
func (g *grid) Set(t time.Time) { g.mu.Lock(); g.t = t; g.mu.Unlock() }

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// TestAlgorithms walks a fixed grid of instants for each algorithm and checks every Status.
func TestAlgorithms(t *testing.T) {
	srv := redistest.Start(t)
	type step struct {
		at   time.Duration // since t0 (t0 is a multiple of every period below)
		cost int64
		want limiter.Status
	}
	tests := []struct {
		name  string
		limit limiter.Limit
		steps []step
	}{
		{
			name:  "token bucket",
			limit: limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 10, Period: time.Second, Burst: 3},
			steps: []step{
				{0, 1, limiter.Status{Allowed: true, Limit: 3, Remaining: 2, ResetAfter: 100 * time.Millisecond}},
				{0, 2, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 300 * time.Millisecond}},
				{0, 1, limiter.Status{Allowed: false, Limit: 3, Remaining: 0, ResetAfter: 300 * time.Millisecond, RetryAfter: 100 * time.Millisecond}},
				{50 * time.Millisecond, 0, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 250 * time.Millisecond}},
				{100 * time.Millisecond, 1, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 300 * time.Millisecond}},
				{250 * time.Millisecond, 3, limiter.Status{Allowed: false, Limit: 3, Remaining: 1, ResetAfter: 150 * time.Millisecond, RetryAfter: 150 * time.Millisecond}},
				// A cost above the burst: never allowed; RetryAfter is max(ResetAfter, Period).
				{time.Second, 4, limiter.Status{Allowed: false, Limit: 3, Remaining: 3, RetryAfter: time.Second}},
			},
		},
		{
			name:  "fixed window",
			limit: limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 3, Period: time.Second},
			steps: []step{
				{100 * time.Millisecond, 2, limiter.Status{Allowed: true, Limit: 3, Remaining: 1, ResetAfter: 900 * time.Millisecond}},
				{900 * time.Millisecond, 2, limiter.Status{Allowed: false, Limit: 3, Remaining: 1, ResetAfter: 100 * time.Millisecond, RetryAfter: 100 * time.Millisecond}},
				{900 * time.Millisecond, 1, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: 100 * time.Millisecond}},
				{time.Second, 3, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: time.Second}},
			},
		},
		{
			name:  "sliding window",
			limit: limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: 4, Period: time.Second},
			steps: []step{
				{500 * time.Millisecond, 4, limiter.Status{Allowed: true, Limit: 4, Remaining: 0, ResetAfter: 1100 * time.Millisecond}},
				// Buckets of 100 ms; below 10 there is no slack: the 4 count in full until their
				// bucket [500ms, 600ms) leaves the window at 1.6 s.
				{900 * time.Millisecond, 1, limiter.Status{Allowed: false, Limit: 4, Remaining: 0, ResetAfter: 700 * time.Millisecond, RetryAfter: 700 * time.Millisecond}},
				{1550 * time.Millisecond, 1, limiter.Status{Allowed: false, Limit: 4, Remaining: 0, ResetAfter: 50 * time.Millisecond, RetryAfter: 50 * time.Millisecond}},
				{1600 * time.Millisecond, 4, limiter.Status{Allowed: true, Limit: 4, Remaining: 0, ResetAfter: 1100 * time.Millisecond}},
				{3 * time.Second, 4, limiter.Status{Allowed: true, Limit: 4, Remaining: 0, ResetAfter: 1100 * time.Millisecond}},
			},
		},
		{
			name:  "sliding log",
			limit: limiter.Limit{Algorithm: limiter.SlidingLog, Limit: 3, Period: time.Second},
			steps: []step{
				{100 * time.Millisecond, 1, limiter.Status{Allowed: true, Limit: 3, Remaining: 2, ResetAfter: time.Second}},
				{600 * time.Millisecond, 2, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: time.Second}},
				{700 * time.Millisecond, 1, limiter.Status{Allowed: false, Limit: 3, Remaining: 0, ResetAfter: 900 * time.Millisecond, RetryAfter: 400 * time.Millisecond}},
				{1100 * time.Millisecond, 1, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: time.Second}},
				{1100 * time.Millisecond, 0, limiter.Status{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: time.Second}},
			},
		},
	}
	for _, m := range modes {
		for _, tt := range tests {
			t.Run(m.name+"/"+tt.name, func(t *testing.T) {
				var clock grid
				s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Now: clock.Now, Unbatched: m.unbatched})
				key := t.Name()
				for i, st := range tt.steps {
					clock.Set(t0.Add(st.at))
					out := make([]limiter.Status, 1)
					allowed, err := s.Take(t.Context(), "tag", []limiter.Hit{{Key: key, Limit: tt.limit, Cost: st.cost}}, out)
					if err != nil {
						t.Fatalf("step %d: Take: %v", i, err)
					}
					if allowed != st.want.Allowed {
						t.Errorf("step %d: allowed = %v, want %v", i, allowed, st.want.Allowed)
					}
					if diff := cmp.Diff(out[0], st.want); diff != "" {
						t.Errorf("step %d (at %v, cost %d): status (-got +want):\n%s", i, st.at, st.cost, diff)
					}
				}
			})
		}
	}
}

// TestAllOrNothing: a Take with one refused hit consumes nothing from the others, and the same
// key twice in one Take counts both hits.
func TestAllOrNothing(t *testing.T) {
	srv := redistest.Start(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			var clock grid
			clock.Set(t0)
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Now: clock.Now, Unbatched: m.unbatched})
			big := limiter.Limit{Name: "big", Algorithm: limiter.FixedWindow, Limit: 10, Period: time.Minute}
			small := limiter.Limit{Name: "small", Algorithm: limiter.TokenBucket, Limit: 1, Period: time.Minute}
			hits := []limiter.Hit{{Key: m.name + "big", Limit: big, Cost: 1}, {Key: m.name + "small", Limit: small, Cost: 1}}
			out := make([]limiter.Status, 2)
			var got []bool
			for range 3 {
				allowed, err := s.Take(t.Context(), "t", hits, out)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, allowed)
			}
			if diff := cmp.Diff(got, []bool{true, false, false}); diff != "" {
				t.Errorf("allowed (-got +want):\n%s", diff)
			}
			// big was consumed once only: 9 remain.
			peek := []limiter.Hit{{Key: m.name + "big", Limit: big}}
			if _, err := s.Take(t.Context(), "t", peek, out[:1]); err != nil {
				t.Fatal(err)
			}
			if got, want := out[0].Remaining, int64(9); got != want {
				t.Errorf("big remaining = %d, want %d", got, want)
			}
			// The same key twice in one Take: 2 × 6 > 10 is refused as a whole.
			twice := []limiter.Hit{{Key: m.name + "big", Limit: big, Cost: 6}, {Key: m.name + "big", Limit: big, Cost: 6}}
			allowed, err := s.Take(t.Context(), "t", twice, out)
			if err != nil {
				t.Fatal(err)
			}
			if allowed || !out[0].Allowed || out[1].Allowed {
				t.Errorf("same key twice: allowed = %v, statuses %+v; want refused on the second hit", allowed, out)
			}
		})
	}
}

// allLimits has one limit of n per hour for each algorithm.
func allLimits(n int64) []limiter.Limit {
	return []limiter.Limit{
		{Name: "tb", Algorithm: limiter.TokenBucket, Limit: n, Period: time.Hour},
		{Name: "sw", Algorithm: limiter.SlidingWindow, Limit: n, Period: time.Hour},
		{Name: "fw", Algorithm: limiter.FixedWindow, Limit: n, Period: time.Hour},
		{Name: "sl", Algorithm: limiter.SlidingLog, Limit: n, Period: time.Hour},
	}
}

// admitExactlyN sends many concurrent Takes of cost 1 through stores (round robin) and checks
// that exactly n are admitted for each limit.
func admitExactlyN(t *testing.T, stores []*redisstore.Store, tag, key string, n int64) {
	t.Helper()
	for _, l := range allLimits(n) {
		var admitted, refused atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 1)
		const workers, each = 32, 10 // 320 attempts
		for w := range workers {
			wg.Go(func() {
				s := stores[w%len(stores)]
				hits := []limiter.Hit{{Key: key + l.Name, Limit: l, Cost: 1}}
				out := make([]limiter.Status, 1)
				for range each {
					allowed, err := s.Take(t.Context(), tag, hits, out)
					if err != nil {
						select {
						case errs <- err:
						default:
						}
						return
					}
					if allowed {
						admitted.Add(1)
					} else {
						refused.Add(1)
					}
				}
			})
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatalf("%s: Take: %v", l.Name, err)
		default:
		}
		if got := admitted.Load(); got != n {
			t.Errorf("%s: admitted %d of %d, want %d", l.Name, got, got+refused.Load(), n)
		}
	}
}

// skewed is a local clock off by d. The stores under test never read it for decisions.
func skewed(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

// TestExactlyNAcrossInstances runs 4 independent stores (4 clients) on one Redis, as 4 Warden
// replicas whose clocks disagree by up to 4 s. With Now nil, time is Redis TIME, and exactly
// n of many concurrent requests are admitted. The control case shows what the same skew does
// when each replica's own clock decides.
func TestExactlyNAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	skews := []time.Duration{-2 * time.Second, -700 * time.Millisecond, 700 * time.Millisecond, 2 * time.Second}
	for _, m := range modes {
		t.Run(m.name+"/redis time", func(t *testing.T) {
			var stores []*redisstore.Store
			for range skews {
				stores = append(stores, newStore(t, newClient(t, srv.Addr()), redisstore.Options{Unbatched: m.unbatched}))
			}
			admitExactlyN(t, stores, "tenant", m.name+":k:", 50)
		})
	}
	t.Run("control: local clocks", func(t *testing.T) {
		// The replica 2 s behind drains a bucket of 50 per 10 s; the one 2 s ahead sees it
		// 4 s refilled. With Redis TIME it would see it empty.
		l := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 50, Period: 10 * time.Second}
		behind := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Now: skewed(-2 * time.Second)})
		ahead := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Now: skewed(2 * time.Second)})
		count := func(s *redisstore.Store) int {
			n := 0
			out := make([]limiter.Status, 1)
			for range 100 {
				ok, err := s.Take(t.Context(), "c", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, out)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					n++
				}
			}
			return n
		}
		if got := count(behind); got != 50 {
			t.Fatalf("behind admitted %d, want 50", got)
		}
		if got := count(ahead); got < 15 {
			t.Errorf("ahead admitted %d after the bucket was drained; want about 20 (skew makes local clocks over-admit)", got)
		}
	})
}

// TestWindowBoundary walks a 1 ms grid across window boundaries with more demand than the
// limit and checks, for every interval between two admissions, the algorithm's bound: a
// token bucket admits at most burst + d/T in any span d; a sliding window at most
// n + n·d/period (+1 for rounding), never the 2n in a moment that a fixed window allows.
func TestWindowBoundary(t *testing.T) {
	srv := redistest.Start(t)
	const n = 10
	period := time.Second
	tests := []struct {
		name  string
		limit limiter.Limit
		bound func(d time.Duration) int
	}{
		{"token bucket", limiter.Limit{Algorithm: limiter.TokenBucket, Limit: n, Period: period},
			func(d time.Duration) int { return n + int(d/(period/n)) }},
		{"sliding window", limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: n, Period: period},
			func(d time.Duration) int { return n + int(int64(n)*int64(d)/int64(period)) + 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clock grid
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Now: clock.Now})
			hits := []limiter.Hit{{Key: tt.name, Limit: tt.limit, Cost: 1}}
			out := make([]limiter.Status, 1)
			var admitted []time.Duration
			// Idle until just before a boundary, then demand on every tick.
			for at := 990 * time.Millisecond; at < 3500*time.Millisecond; at += time.Millisecond {
				clock.Set(t0.Add(at))
				for range 2 {
					ok, err := s.Take(t.Context(), "b", hits, out)
					if err != nil {
						t.Fatal(err)
					}
					if ok {
						admitted = append(admitted, at)
					}
				}
			}
			if len(admitted) < 2*n {
				t.Fatalf("admitted only %d over 2.5 periods", len(admitted))
			}
			for i := range admitted {
				for j := i; j < len(admitted); j++ {
					d := admitted[j] - admitted[i]
					if got, limit := j-i+1, tt.bound(d); got > limit {
						t.Fatalf("admitted %d within %v (from %v to %v), bound %d", got, d, admitted[i], admitted[j], limit)
					}
				}
			}
		})
	}
}

// TestTTL: after a run over every algorithm, every key the store wrote expires.
func TestTTL(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	s := newStore(t, client, redisstore.Options{})
	out := make([]limiter.Status, 1)
	for i := range 20 {
		for _, l := range allLimits(5) {
			l.Period = time.Duration(i+1) * time.Second
			hit := []limiter.Hit{{Key: fmt.Sprintf("%s:%d", l.Name, i%7), Limit: l, Cost: int64(i % 3)}}
			if _, err := s.Take(t.Context(), fmt.Sprint("tag", i%3), hit, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	keys, err := client.Keys(t.Context(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no keys written")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "warden:rl:{") {
			t.Errorf("key %q lacks the prefix and hash tag", k)
		}
		ttl, err := client.PTTL(t.Context(), k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("key %q: PTTL %v, want > 0", k, ttl)
		}
	}
}

// TestNoScript: SCRIPT FLUSH in the middle of a run costs nothing but one EVAL per server.
func TestNoScript(t *testing.T) {
	srv := redistest.Start(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			client := newClient(t, srv.Addr())
			s := newStore(t, client, redisstore.Options{Unbatched: m.unbatched})
			l := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 100, Period: time.Hour}
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Go(func() {
					out := make([]limiter.Status, 1)
					for i := range 20 {
						if w == 0 && i == 10 {
							if err := client.ScriptFlush(t.Context()).Err(); err != nil {
								t.Error(err)
							}
						}
						ok, err := s.Take(t.Context(), "ns", []limiter.Hit{{Key: m.name, Limit: l, Cost: 1}}, out)
						if err != nil {
							t.Errorf("Take: %v", err)
							return
						}
						if ok {
							admitted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if got := admitted.Load(); got != 100 {
				t.Errorf("admitted %d of 160, want 100", got)
			}
		})
	}
}

// TestRedisRestart kills Redis in the middle of a run of concurrent Takes and brings it back:
// every Take that starts while Redis is down fails (with an error, not a hang), and Takes
// succeed again after the restart, on the empty data set.
func TestRedisRestart(t *testing.T) {
	srv := redistest.Start(t)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Unbatched: m.unbatched, Timeout: 200 * time.Millisecond})
			l := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1 << 20, Period: time.Hour}
			const (
				up = iota
				down
				restarted
			)
			var phase atomic.Int32
			var ok, failed [3]atomic.Int64 // by the phase when the Take returned
			var wrong atomic.Int64         // succeeded, and both started and returned while down
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					hits := []limiter.Hit{{Key: "restart" + m.name, Limit: l, Cost: 1}}
					out := make([]limiter.Status, 1)
					for {
						select {
						case <-stop:
							return
						default:
						}
						start := phase.Load()
						ctx, cancel := context.WithTimeout(t.Context(), time.Second)
						allowed, err := s.Take(ctx, "r", hits, out)
						cancel()
						end := phase.Load()
						switch {
						case err != nil:
							failed[end].Add(1)
						case allowed && start == down && end == down:
							wrong.Add(1)
						case allowed:
							ok[end].Add(1)
						}
					}
				})
			}
			waitFor := func(what string, cond func() bool) {
				if testutil.Poll(5*time.Second, cond) {
					return
				}
				close(stop)
				wg.Wait()
				t.Fatalf("gave up waiting for %s", what)
			}
			waitFor("Takes before the kill", func() bool { return ok[up].Load() > 100 })
			srv.Stop()
			phase.Store(down)
			waitFor("failed Takes while down", func() bool { return failed[down].Load() > 20 })
			// Before the restart: a Take still dialing when the server is back (go-redis retries
			// dials) succeeds, and Restart returns only after its own readiness poll.
			phase.Store(restarted)
			srv.Restart()
			waitFor("Takes after the restart", func() bool { return ok[restarted].Load() > 100 })
			close(stop)
			wg.Wait()
			if got := wrong.Load(); got != 0 {
				t.Errorf("%d Takes that ran while Redis was down succeeded, want 0", got)
			}
			// The restarted server is empty: the counter starts again from zero. It holds the
			// Takes admitted since, and may hold some that failed since: one whose answer came
			// after its timeout (a loaded machine) was counted by Redis all the same.
			out := make([]limiter.Status, 1)
			if _, err := s.Take(t.Context(), "r", []limiter.Hit{{Key: "restart" + m.name, Limit: l}}, out); err != nil {
				t.Fatal(err)
			}
			admitted, failedSince := ok[restarted].Load(), failed[restarted].Load()
			if got := l.Limit - out[0].Remaining; got < admitted || got > admitted+failedSince {
				t.Errorf("counter after restart = %d, want the %d Takes admitted since, plus at most the %d that failed since",
					got, admitted, failedSince)
			}
		})
	}
}

// TestContextEnds: a caller whose ctx ends while its command is held up in Redis gets
// ctx.Err() without waiting for Redis.
func TestContextEnds(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClient(t, srv.Addr())
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Unbatched: m.unbatched, Timeout: 10 * time.Second})
			l := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 3, Period: time.Hour}
			out := make([]limiter.Status, 1)
			// Warm the connection and the script cache.
			if _, err := s.Take(t.Context(), "c", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, out); err != nil {
				t.Fatal(err)
			}
			const pause = 2 * time.Second
			if err := admin.Do(t.Context(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			pausedUntil := time.Now().Add(pause)
			defer admin.Do(context.Background(), "CLIENT", "UNPAUSE")
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			_, err := s.Take(ctx, "c", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, out)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Take = %v, want context.DeadlineExceeded", err)
			}
			if time.Now().After(pausedUntil) {
				t.Errorf("Take returned after Redis resumed: it waited for Redis, not for ctx")
			}
			if err := admin.Do(t.Context(), "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestReset(t *testing.T) {
	srv := redistest.Start(t)
	for _, l := range allLimits(1) {
		// Another counter in the same hash (a single hash) keeps its count.
		s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Hashes: 1, Prefix: l.Name + ":"})
		hits := []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}
		other := []limiter.Hit{{Key: "other", Limit: l, Cost: 1}}
		out := make([]limiter.Status, 1)
		if _, err := s.Take(t.Context(), "t", other, out); err != nil {
			t.Fatal(err)
		}
		var got []bool
		for _, reset := range []bool{false, false, true} {
			if reset {
				if err := s.Reset(t.Context(), "t", "k"); err != nil {
					t.Fatal(err)
				}
			}
			ok, err := s.Take(t.Context(), "t", hits, out)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, ok)
		}
		ok, err := s.Take(t.Context(), "t", other, out)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ok)
		if diff := cmp.Diff(got, []bool{true, false, true, false}); diff != "" {
			t.Errorf("%s: allowed (-got +want):\n%s", l.Name, diff)
		}
	}
}

func TestInvalid(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{})
	tests := []struct {
		name string
		hit  limiter.Hit
	}{
		{"zero limit", limiter.Hit{Key: "k", Limit: limiter.Limit{Period: time.Second}, Cost: 1}},
		{"zero period", limiter.Hit{Key: "k", Limit: limiter.Limit{Limit: 1}, Cost: 1}},
		{"negative cost", limiter.Hit{Key: "k", Limit: limiter.Limit{Limit: 1, Period: time.Second}, Cost: -1}},
		{"unknown algorithm", limiter.Hit{Key: "k", Limit: limiter.Limit{Algorithm: 9, Limit: 1, Period: time.Second}, Cost: 1}},
		{"too large", limiter.Hit{Key: "k", Limit: limiter.Limit{Limit: 1 << 40, Period: 24 * time.Hour}, Cost: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Take(t.Context(), "t", []limiter.Hit{tt.hit}, make([]limiter.Status, 1)); err == nil {
				t.Errorf("Take(%+v): no error", tt.hit)
			}
		})
	}
	if _, err := s.Take(t.Context(), "t", []limiter.Hit{{Key: "k"}}, nil); err == nil {
		t.Error("Take with len(out) != len(hits): no error")
	}
}

func TestClosed(t *testing.T) {
	srv := redistest.Start(t)
	s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	l := limiter.Limit{Limit: 1, Period: time.Second}
	_, err := s.Take(t.Context(), "t", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, make([]limiter.Status, 1))
	if !errors.Is(err, redisstore.ErrClosed) {
		t.Errorf("Take after Close = %v, want ErrClosed", err)
	}
}

// TestStorageLayout: a counter is a field of a hash with a TTL, the token bucket and the fixed
// window keeping an integer, in a listpack (see the README's "Redis storage"); a sliding log is
// a sorted set with a TTL under the counter's whole name. A key of another type under the
// hash's name, or another algorithm's value in the field, reads as an empty counter.
func TestStorageLayout(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	s := newStore(t, client, redisstore.Options{Prefix: "p:"})
	ctx := t.Context()
	for _, tt := range []struct {
		alg   limiter.Algorithm
		first string // the value's first byte
	}{{limiter.TokenBucket, "1"}, {limiter.FixedWindow, "-"}, {limiter.SlidingWindow, "\x9c"}} {
		l := limiter.Limit{Algorithm: tt.alg, Limit: 10, Period: time.Hour}
		key := "k-" + tt.alg.String()
		out := make([]limiter.Status, 1)
		if _, err := s.Take(ctx, "tag", []limiter.Hit{{Key: key, Limit: l, Cost: 3}}, out); err != nil {
			t.Fatal(err)
		}
		name := redisstore.Name(s, "tag", key)
		hash, field := name[:len(name)-redisstore.FieldLen], name[len(name)-redisstore.FieldLen:]
		if !strings.HasPrefix(hash, "p:{") || redisstore.KeySlot(hash) != redisstore.KeySlot("{tag}") {
			t.Errorf("%s: hash %q, not in the slot of {tag}", tt.alg, hash)
		}
		if enc, err := client.ObjectEncoding(ctx, hash).Result(); err != nil || enc != "listpack" {
			t.Errorf("%s: OBJECT ENCODING = %q, %v; want listpack", tt.alg, enc, err)
		}
		if ttl, err := client.PTTL(ctx, hash).Result(); err != nil || ttl < out[0].ResetAfter {
			t.Errorf("%s: PTTL = %v, %v; want at least the counter's %v to its expiry", tt.alg, ttl, err, out[0].ResetAfter)
		}
		v, err := client.HGet(ctx, hash, field).Result()
		if err != nil || !strings.HasPrefix(v, tt.first) {
			t.Errorf("%s: value %q, %v; want it to start with %q", tt.alg, v, err, tt.first)
		}
		// A string under the hash's name, then another algorithm's value: an empty counter.
		for _, seed := range []func() error{
			func() error { return client.Set(ctx, hash, "12", time.Hour).Err() },
			func() error { return client.HSet(ctx, hash, field, "\x9c-12:3").Err() },
		} {
			if err := seed(); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Take(ctx, "tag", []limiter.Hit{{Key: key, Limit: l, Cost: 3}}, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Remaining != 7 {
				t.Errorf("%s over a foreign value: remaining %d, want 7", tt.alg, out[0].Remaining)
			}
		}
	}
	l := limiter.Limit{Algorithm: limiter.SlidingLog, Limit: 10, Period: time.Hour}
	if _, err := s.Take(ctx, "tag", []limiter.Hit{{Key: "log", Limit: l, Cost: 3}}, make([]limiter.Status, 1)); err != nil {
		t.Fatal(err)
	}
	name := redisstore.Name(s, "tag", "log")
	if n, err := client.ZCard(ctx, name).Result(); err != nil || n != 3 {
		t.Errorf("sliding log: ZCARD = %d, %v; want 3", n, err)
	}
	if ttl, err := client.PTTL(ctx, name).Result(); err != nil || ttl <= 0 {
		t.Errorf("sliding log: PTTL = %v, %v; want positive", ttl, err)
	}
}

// TestHashTTL: a hash outlives every counter in it, whatever order they are written in, also
// by one Take, on Redis's clock: a counter of an hour, then one of a second, in one hash.
func TestHashTTL(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	ctx := t.Context()
	hour := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 10, Period: time.Hour}
	second := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 10, Period: time.Second}
	for i, takes := range [][]limiter.Hit{
		{{Key: "h", Limit: hour, Cost: 1}, {Key: "s", Limit: second, Cost: 1}},
		{{Key: "s", Limit: second, Cost: 1}, {Key: "h", Limit: hour, Cost: 1}},
	} {
		for _, oneTake := range []bool{false, true} {
			s := newStore(t, client, redisstore.Options{Hashes: 1, Prefix: fmt.Sprintf("ttl%d%v:", i, oneTake)})
			if oneTake {
				if _, err := s.Take(ctx, "t", takes, make([]limiter.Status, 2)); err != nil {
					t.Fatal(err)
				}
			} else {
				for _, h := range takes {
					if _, err := s.Take(ctx, "t", []limiter.Hit{h}, make([]limiter.Status, 1)); err != nil {
						t.Fatal(err)
					}
				}
			}
			name := redisstore.Name(s, "t", "h")
			hash := name[:len(name)-redisstore.FieldLen]
			// The window of the hour ends within the hour, at a whole hour of Unix time.
			end := time.Now().Truncate(time.Hour).Add(time.Hour)
			if ttl, err := client.PTTL(ctx, hash).Result(); err != nil || time.Now().Add(ttl).Before(end) {
				t.Errorf("order %d, one Take %v: PTTL %v, %v: the hash expires before the hour's window ends (%v)", i, oneTake, ttl, err, end)
			}
		}
	}
}

// TestChurnBounded: counters that expire make room for new ones: over rounds of 100 new keys,
// each round a minute after the last, what Redis holds stays near the live counters (a
// store of a key per counter, each expiring on Redis's clock, held every round's keys: the
// test's clock runs ahead of Redis's), and no live counter is lost to a sweep.
func TestChurnBounded(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	clock := &grid{t: t0}
	const hashes, perRound, rounds = 4, 100, 12
	s := newStore(t, client, redisstore.Options{Prefix: "churn:", Now: clock.Now, Hashes: hashes})
	ctx := t.Context()
	algs := []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow}
	out := make([]limiter.Status, 1)
	for r := range rounds {
		for pass := range 2 {
			for i := range perRound {
				l := limiter.Limit{Algorithm: algs[i%len(algs)], Limit: 1, Period: time.Minute}
				hits := []limiter.Hit{{Key: fmt.Sprintf("r%d-k%d", r, i), Limit: l, Cost: 1}}
				ok, err := s.Take(ctx, "t", hits, out)
				if err != nil {
					t.Fatal(err)
				}
				if ok != (pass == 0) {
					t.Fatalf("round %d, key %d, pass %d: allowed %v", r, i, pass, ok)
				}
			}
		}
		// A round later (the sliding window lives 1.1 periods), only this round is live.
		clock.Set(clock.Now().Add(2 * time.Minute))
		// Live counters, plus per hash at most max(16, half its length after its last
		// sweep, when it had at most its live counters and the counters of one round).
		stored := storedCounters(t, client, "churn:*")
		t.Logf("round %d: %d counters stored", r, stored)
		if bound := 2*perRound + hashes*(16+perRound/hashes); stored > bound {
			t.Fatalf("round %d: %d counters stored, want at most %d", r, stored, bound)
		}
	}
}

// storedCounters counts what Redis holds under pattern: one per key of a counter (a string or
// a sorted set), one per field of a counter in a hash.
func storedCounters(t *testing.T, client *redis.Client, pattern string) int {
	t.Helper()
	ctx := t.Context()
	n := 0
	iter := client.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		typ, err := client.Type(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if typ != "hash" {
			n++
			continue
		}
		fields, err := client.HKeys(ctx, iter.Val()).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			if len(f) == redisstore.FieldLen {
				n++
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLostReplyCountsOnce: the reply to a Take's script call is lost with its connection after
// Redis ran the script. A client that retries (go-redis's default MaxRetries is 3) must not send
// the script again: that would count the Take twice. The Take fails (the Limiter's failure
// policy decides), Redis ran one script call, and the counter holds exactly one Take.
func TestLostReplyCountsOnce(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := redistest.Start(t)
			direct := newClient(t, srv.Addr())
			proxy := redistest.StartLoseReply(t, srv.Addr(), "evalsha")
			c := redis.NewClient(&redis.Options{Addr: proxy, MaxRetries: 3, DialTimeout: time.Second, ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = c.Close() })
			s := newStore(t, c, redisstore.Options{Unbatched: m.unbatched})
			if err := s.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			lim := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 10, Period: time.Hour}
			hits := []limiter.Hit{{Key: "k", Limit: lim, Cost: 1}}
			out := make([]limiter.Status, 1)
			before := scriptCalls(t, direct)
			if _, err := s.Take(t.Context(), "tag", hits, out); err == nil {
				t.Fatalf("Take whose reply was lost = %+v, nil; want an error", out[0])
			}
			if n := scriptCalls(t, direct) - before; n != 1 {
				t.Fatalf("Redis ran %d script calls for one Take whose reply was lost, want 1", n)
			}
			if _, err := s.Take(t.Context(), "tag", hits, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Remaining != 8 {
				t.Fatalf("after a lost Take and one more, remaining = %d, want 8 (each counted once)", out[0].Remaining)
			}
		})
	}
}
