package redisstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// roundTrips is an Observer that counts what it is told.
type roundTrips struct {
	n, commands, scripts, maxCommands atomic.Int64
	took                              atomic.Int64 // ns
}

func (r *roundTrips) RoundTrip(commands, scripts int, took time.Duration) {
	r.n.Add(1)
	r.commands.Add(int64(commands))
	r.scripts.Add(int64(scripts))
	r.took.Add(int64(took))
	for m := r.maxCommands.Load(); int64(commands) > m && !r.maxCommands.CompareAndSwap(m, int64(commands)); m = r.maxCommands.Load() {
	}
}

// takeConcurrently runs n Takes from 8 goroutines on distinct keys of tags.
func takeConcurrently(t *testing.T, s *redisstore.Store, tags []string, n int) {
	t.Helper()
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1000, Period: time.Minute}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			out := make([]limiter.Status, 1)
			for i := g; i < n; i += 8 {
				if _, err := s.Take(t.Context(), tags[i%len(tags)], []limiter.Hit{{Key: "k", Limit: lim, Cost: 1}}, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkStats: every Take went in a script call of a counted round trip, none is left in
// flight, and the Observer was told of each round trip with a latency.
func checkStats(t *testing.T, s *redisstore.Store, obs *roundTrips, takes int) {
	t.Helper()
	st := s.Stats()
	if st.Takes != uint64(takes) || st.RoundTrips == 0 || st.RoundTrips > st.Scripts || st.Scripts > st.Takes || st.InFlight != 0 {
		t.Errorf("Stats = %+v, want %d Takes in 1..%d script calls in at most as many round trips, none in flight", st, takes, takes)
	}
	if obs.n.Load() != int64(st.RoundTrips) || obs.commands.Load() != int64(st.Takes) || obs.scripts.Load() != int64(st.Scripts) {
		t.Errorf("Observer told of %d round trips, %d Takes, %d scripts; Stats %+v", obs.n.Load(), obs.commands.Load(), obs.scripts.Load(), st)
	}
	if obs.took.Load() <= 0 {
		t.Errorf("Observer latencies sum to %v, want > 0", time.Duration(obs.took.Load()))
	}
}

// TestStats: the round-trip counts and the Observer move under real Redis, batched and
// unbatched, on one node and on a Cluster (per master).
func TestStats(t *testing.T) {
	srv := redistest.Start(t)
	const takes = 400
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			obs := &roundTrips{}
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Unbatched: m.unbatched, Observer: obs})
			if err := s.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st != (redisstore.Stats{}) {
				t.Fatalf("Stats before any Take = %+v, want zero", st)
			}
			takeConcurrently(t, s, []string{"stats-" + m.name}, takes)
			checkStats(t, s, obs, takes)
			if m.unbatched && obs.maxCommands.Load() != 1 {
				t.Errorf("unbatched: largest round trip %d commands, want 1", obs.maxCommands.Load())
			}
		})
	}
	t.Run("cluster", func(t *testing.T) {
		cluster := redistest.StartCluster(t)
		cc := newClusterClient(t, cluster)
		obs := &roundTrips{}
		s := newStore(t, cc, redisstore.Options{Observer: obs})
		if err := s.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		var tags []string
		for _, tag := range tagsOnEveryNode(t, cc) {
			tags = append(tags, tag)
		}
		takeConcurrently(t, s, tags, takes)
		checkStats(t, s, obs, takes)
	})
}

// TestStatsAllocs: reading the counts allocates nothing (they are read at every scrape).
func TestStatsAllocs(t *testing.T) {
	s := newStore(t, newClient(t, "127.0.0.1:1"), redisstore.Options{Unbatched: true})
	if n := testing.AllocsPerRun(100, func() { _ = s.Stats() }); n != 0 {
		t.Errorf("Stats: %v allocs, want 0", n)
	}
}

// TestObserverAllocs: counting round trips and telling an Observer adds no allocation to a
// Take, batched or not.
func TestObserverAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	srv := redistest.Start(t)
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1 << 40, Period: time.Minute}
	hits := []limiter.Hit{{Key: "k", Limit: lim, Cost: 1}}
	out := make([]limiter.Status, 1)
	for _, m := range modes {
		allocs := func(obs redisstore.Observer) float64 {
			s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Unbatched: m.unbatched, Pipelines: 1, Observer: obs})
			if err := s.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			return testing.AllocsPerRun(200, func() { _, _ = s.Take(t.Context(), "allocs", hits, out) })
		}
		without, with := allocs(nil), allocs(&roundTrips{})
		if with > without {
			t.Errorf("%s: Take allocates %v with an Observer, %v without", m.name, with, without)
		}
	}
}

// takeObserver is an Observer that also implements TakeObserver.
type takeObserver struct {
	roundTrips
	takes, batched, maxBatch atomic.Int64
}

type ctxKey struct{}

func (o *takeObserver) TakeAnswered(ctx context.Context, batch int) {
	if ctx.Value(ctxKey{}) == "take" {
		o.takes.Add(1)
	}
	o.batched.Add(int64(batch))
	for m := o.maxBatch.Load(); int64(batch) > m && !o.maxBatch.CompareAndSwap(m, int64(batch)); m = o.maxBatch.Load() {
	}
}

// TestTakeObserver: a batched Take tells the TakeObserver its own ctx and the size of the
// pipeline that answered it: every Take once, sizes between 1 and MaxBatch.
func TestTakeObserver(t *testing.T) {
	srv := redistest.Start(t)
	obs := &takeObserver{}
	s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Observer: obs})
	if err := s.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	const takes = 400
	lim := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1000, Period: time.Minute}
	ctx := context.WithValue(t.Context(), ctxKey{}, "take")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			out := make([]limiter.Status, 1)
			for i := g; i < takes; i += 8 {
				if _, err := s.Take(ctx, "obs", []limiter.Hit{{Key: "k", Limit: lim, Cost: 1}}, out); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := obs.takes.Load(); got != takes {
		t.Errorf("TakeAnswered with the Take's ctx %d times, want %d", got, takes)
	}
	if b, m := obs.batched.Load(), obs.maxBatch.Load(); b < takes || m < 1 || m > 128 {
		t.Errorf("batch sizes sum to %d (max %d), want at least %d, max within 1..128", b, m, takes)
	}
}
