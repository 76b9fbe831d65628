package redisstore_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestTimeoutOnWireOrQueued: a Take whose command was sent to a Redis that does not answer
// times out with limiter.ErrTimeout (evidence of a sick Redis, for the breaker); a Take whose
// deadline passes while it still waits for a pipeline gets a plain context error (load on
// this process, not Redis's fault).
func TestTimeoutOnWireOrQueued(t *testing.T) {
	srv := redistest.Start(t)
	admin := newClient(t, srv.Addr())
	s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Pipelines: 1})
	l := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 3, Period: time.Hour}
	take := func(ctx context.Context) error {
		_, err := s.Take(ctx, "q", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, make([]limiter.Status, 1))
		return err
	}
	if err := take(t.Context()); err != nil { // warm the connection
		t.Fatal(err)
	}
	if err := admin.Do(t.Context(), "CLIENT", "PAUSE", 1000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	defer admin.Do(context.Background(), "CLIENT", "UNPAUSE")
	var wg sync.WaitGroup
	var onWire error
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		onWire = take(ctx)
	})
	time.Sleep(50 * time.Millisecond) // the first Take is in Redis, holding the one pipeline
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	queued := take(ctx)
	wg.Wait()
	if !errors.Is(onWire, limiter.ErrTimeout) || !errors.Is(onWire, context.DeadlineExceeded) {
		t.Errorf("Take on the wire: got %v, want limiter.ErrTimeout and context.DeadlineExceeded", onWire)
	}
	if !errors.Is(queued, context.DeadlineExceeded) || errors.Is(queued, limiter.ErrTimeout) {
		t.Errorf("Take still queued: got %v, want context.DeadlineExceeded and not limiter.ErrTimeout", queued)
	}
}

// TestScriptLoaded: Load puts the script on every Cluster master before the first Take, and
// OnConnect puts it on a restarted server before the first command on a new connection.
func TestScriptLoaded(t *testing.T) {
	sha := redis.NewScript(redisstore.Script()).Hash()
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		cc := newClusterClient(t, cl)
		s := newStore(t, cc, redisstore.Options{})
		if err := s.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		for _, n := range cl.Nodes {
			c := newClient(t, n.Addr())
			if got, err := c.ScriptExists(t.Context(), sha).Result(); err != nil || !got[0] {
				t.Errorf("node %s: SCRIPT EXISTS = %v, %v, want true", n.Addr(), got, err)
			}
		}
	})
	t.Run("reconnect", func(t *testing.T) {
		srv := redistest.Start(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1, OnConnect: redisstore.OnConnect})
		t.Cleanup(func() { _ = c.Close() })
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
		admin := newClient(t, srv.Addr())
		if got, err := admin.ScriptExists(t.Context(), sha).Result(); err != nil || !got[0] {
			t.Fatalf("after the first connection: SCRIPT EXISTS = %v, %v, want true", got, err)
		}
		srv.Stop()
		srv.Restart()  // empty, no script
		for range 50 { // the pooled connection is dead; the next one loads the script
			if c.Ping(t.Context()).Err() == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got, err := admin.ScriptExists(t.Context(), sha).Result(); err != nil || !got[0] {
			t.Fatalf("after a restart and a reconnect: SCRIPT EXISTS = %v, %v, want true", got, err)
		}
	})
}

// TestPipeliningHidesLatency puts a proxy that delays every chunk toward Redis by 2ms between
// the store and Redis and runs 50 callers in a closed loop through a Limiter with the default
// configuration. With enough pipelines in flight the delay only adds itself to each call's
// time: throughput must be at least 80% of X = C / (C/X0 + d), where X0 is the throughput
// through the same proxy without delay and d the delay the proxy adds as measured (a lone
// caller's median time with the delay less without it: at least 2ms, more by the proxy's own
// scheduling on a busy machine), and no decision may be taken by the failure policy.
// A throughput ratio on a shared 2-core machine: it runs without the race detector (.ci/test's
// timing step), and takes the best of three attempts so that one disturbed run does not fail it.
func TestTimingPipeliningHidesLatency(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a throughput measurement")
	}
	const (
		callers = 50
		d       = 2 * time.Millisecond
		window  = 1500 * time.Millisecond
	)
	srv := redistest.Start(t)
	measure := func(delay time.Duration) (rate float64, lone time.Duration, notStore int64) {
		p := redistest.StartProxy(t, srv.Addr(), delay)
		c := redis.NewClient(&redis.Options{Addr: p.Addr(), ContextTimeoutEnabled: true, OnConnect: redisstore.OnConnect})
		t.Cleanup(func() { _ = c.Close() })
		s := newStore(t, c, redisstore.Options{})
		if err := s.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The store's and the Limiter's defaults (no over-limit cache: nothing is over).
		l, err := limiter.New(limiter.Config{Store: s, OverLimitCacheSize: -1, Logger: slog.New(slog.NewTextHandler(logWriter{t}, nil)), Domains: []limiter.Domain{{
			Name: "d", Descriptors: []limiter.Descriptor{{Key: "k", RateLimit: &limiter.RateLimit{RequestsPerUnit: 1 << 30, Unit: "hour", Algorithm: limiter.FixedWindow}}},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{{Entries: []limiter.Entry{{Key: "k", Value: "v"}}}}}
		var n, bad atomic.Int64
		var stop atomic.Bool
		run := func(count bool) {
			dur := window
			if !count {
				dur = 200 * time.Millisecond
			}
			var wg sync.WaitGroup
			for range callers {
				wg.Go(func() {
					var res limiter.Result
					for i := 0; i < 1_000_000 && !stop.Load(); i++ { // bounded
						err := l.Check(context.Background(), req, &res)
						if count {
							n.Add(1)
							if err != nil || res.Statuses[0].Source != limiter.FromStore {
								if bad.Add(1) == 1 {
									t.Logf("first decision not by the store: %v %+v", err, res)
								}
							}
						}
					}
				})
			}
			time.Sleep(dur)
			stop.Store(true)
			wg.Wait()
			stop.Store(false)
		}
		run(false) // warm up: connections, the pool, the pipelines
		start := time.Now()
		run(true)
		rate = float64(n.Load()) / time.Since(start).Seconds()
		// A lone caller's median time per call: what the proxy really adds (its own
		// scheduling and timer slack come on top of delay) is the difference of two.
		var res limiter.Result
		times := make([]time.Duration, 31)
		for i := range times {
			t0 := time.Now()
			if err := l.Check(context.Background(), req, &res); err != nil {
				t.Fatal(err)
			}
			times[i] = time.Since(t0)
		}
		slices.Sort(times)
		return rate, times[len(times)/2], bad.Load()
	}
	best := 0.0
	for attempt := 1; attempt <= 3 && best < 0.8; attempt++ {
		x0, lone0, bad0 := measure(0)
		x, lone, bad := measure(d)
		// The delay as the proxy applies it: d nominal, plus the proxy's own slack.
		dd := max(d, lone-lone0)
		want := callers / (callers/x0 + dd.Seconds())
		t.Logf("attempt %d: X0 = %.0f/s, X(d=%v, %v measured) = %.0f/s, C/(C/X0+d) = %.0f/s, ratio %.2f", attempt, x0, d, dd, x, want, x/want)
		if bad0 != 0 || bad != 0 {
			t.Fatalf("decisions not taken by the store: %d without delay, %d with %v, want 0", bad0, bad, d)
		}
		best = max(best, x/want)
	}
	if best < 0.8 {
		t.Errorf("throughput with %v to Redis: at best %.0f%% of C/(C/X0+d) in 3 attempts, want at least 80%%", d, 100*best)
	}
}

// logWriter writes a logger's lines to the test's log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
