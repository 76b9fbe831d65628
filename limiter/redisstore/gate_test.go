package redisstore_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// closedLoop runs callers goroutines, each making each Takes one after the other on its own
// key, and fails t on any error but ErrClosed; it returns the number of ErrClosed answers.
func closedLoop(t *testing.T, s *redisstore.Store, callers, each int) int64 {
	t.Helper()
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1 << 30, Period: time.Hour}
	var closed atomic.Int64
	var wg sync.WaitGroup
	for g := range callers {
		wg.Go(func() {
			hits := []limiter.Hit{{Key: "k" + string(rune('a'+g%26)) + string(rune('a'+g/26)), Limit: l, Cost: 1}}
			out := make([]limiter.Status, 1)
			for range each {
				_, err := s.Take(context.Background(), "gate", hits, out)
				if errors.Is(err, redisstore.ErrClosed) {
					closed.Add(1)
					continue
				}
				if err != nil {
					t.Errorf("Take: %v", err) // then stop: ErrClosed comes after Close
					return
				}
			}
		})
	}
	wg.Wait()
	return closed.Load()
}

// TestCollectorGathers: 50 callers in a closed loop on a local Redis, with the default
// options, share script calls: while pipelines are in flight, the collector waits (briefly)
// for more calls instead of sending each as soon as it is queued. Without the gate, a free
// batcher took calls one or two at a time (1.6 Takes per script call in BenchmarkTake); it
// counts script calls through Stats, not time.
func TestCollectorGathers(t *testing.T) {
	const (
		callers = 50
		each    = 200
		want    = 3.0 // Takes per script call, at least
	)
	srv := redistest.Start(t)
	s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{})
	if err := s.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	closedLoop(t, s, callers, 20) // warm up: connections
	st0 := s.Stats()
	closedLoop(t, s, callers, each)
	st := s.Stats()
	takes, scripts := st.Takes-st0.Takes, st.Scripts-st0.Scripts
	if takes != callers*each {
		t.Fatalf("Stats counted %d Takes, want %d", takes, callers*each)
	}
	got := float64(takes) / float64(scripts)
	t.Logf("%d Takes in %d script calls (%.1f per call), %d round trips", takes, scripts, got, st.RoundTrips-st0.RoundTrips)
	if got < want {
		t.Errorf("%.1f Takes per script call with %d callers, want at least %.0f", got, callers, want)
	}
}

// TestLoneTakeNotHeld: a Take that finds fewer than two pipelines in flight is sent at once,
// in a pipeline of its own: the collector never holds for one or two callers (a collector
// holding a call with two pipelines in flight means three callers at least), so a lone Take
// never waits for others.
func TestLoneTakeNotHeld(t *testing.T) {
	srv := redistest.Start(t)
	for _, callers := range []int{1, 2} {
		s := newStore(t, newClient(t, srv.Addr()), redisstore.Options{})
		closedLoop(t, s, callers, 300)
		st := s.Stats()
		if h := s.Stats().Holds; h != 0 {
			t.Errorf("%d callers: the collector held %d batches, want 0", callers, h)
		}
		if callers == 1 && (st.RoundTrips != st.Takes || st.Scripts != st.Takes) {
			t.Errorf("1 caller: Stats %+v, want one round trip and one script call per Take", st)
		}
	}
}

// TestCloseWhileHolding: Close while collectors hold (with many pipelines in flight to a
// Redis 20ms away) returns within a few round trips and every Take gets an answer, a
// decision or ErrClosed; goleak (TestMain) checks that no batcher is left behind.
func TestCloseWhileHolding(t *testing.T) {
	srv := redistest.Start(t)
	p := redistest.StartProxy(t, srv.Addr(), 20*time.Millisecond)
	s, err := redisstore.New(newClient(t, p.Addr()), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Loaded first, as Warden does before it is ready: otherwise the first pipelines come
	// back NOSCRIPT and go again as EVALs of the whole script, which on a loaded machine took
	// some Takes past their timeout (an error here, not the hold under test).
	if err := s.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	done := make(chan int64)
	go func() { done <- closedLoop(t, s, 200, 1000) }()
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Holds == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	held := s.Stats().Holds > 0
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("no collector held in 10s with 200 callers to a Redis 20ms away")
	}
	// Close sends what is queued (up to 200 calls) and waits for the pipelines in flight: a
	// few round trips, up to 0.9s under the race detector on a loaded 2-core machine, with or
	// without the gate. A hold that did not end would keep it until the test's end.
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Close took %v with pipelines 20ms away, want a few round trips", took)
	}
	select {
	case closed := <-done:
		if closed == 0 {
			t.Error("no Take got ErrClosed after Close")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Takes still unanswered 10s after Close")
	}
}

// goroutineID is the id of the calling goroutine, from the first line of its stack
// ("goroutine 7 [running]:").
func goroutineID() string {
	var buf [64]byte
	f := strings.Fields(string(buf[:runtime.Stack(buf[:], false)]))
	return f[1]
}

// senders is an Observer that records the goroutine each round trip was made from.
type senders struct {
	mu  sync.Mutex
	ids []string
}

func (o *senders) RoundTrip(int, int, time.Duration) {
	id := goroutineID()
	o.mu.Lock()
	o.ids = append(o.ids, id)
	o.mu.Unlock()
}

// TestLoneTakeSentByCaller: a Take that finds nothing queued and no pipeline in flight is
// sent from the caller's own goroutine (the Observer is told of a round trip from the
// goroutine that made it), not handed to a batcher goroutine and back, on one server and on
// each master of a Cluster; Stats counts those round trips as Direct.
func TestLoneTakeSentByCaller(t *testing.T) {
	const takes = 20
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 1 << 30, Period: time.Hour}
	check := func(t *testing.T, client redisstore.Client, tags []string) {
		obs := &senders{}
		s := newStore(t, client, redisstore.Options{Observer: obs})
		if err := s.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		out := make([]limiter.Status, 1)
		for i := range takes {
			if _, err := s.Take(t.Context(), tags[i%len(tags)], []limiter.Hit{{Key: "lone", Limit: l, Cost: 1}}, out); err != nil {
				t.Fatal(err)
			}
		}
		me := goroutineID()
		obs.mu.Lock()
		defer obs.mu.Unlock()
		for i, id := range obs.ids {
			if id != me {
				t.Fatalf("round trip %d made by goroutine %s, want the caller's, %s", i, id, me)
			}
		}
		if st := s.Stats(); len(obs.ids) != takes || st.Direct != takes || st.RoundTrips != takes || st.Takes != takes {
			t.Errorf("%d round trips observed, Stats %+v; want %d Takes, each in a direct round trip", len(obs.ids), st, takes)
		}
	}
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		check(t, newClient(t, srv.Addr()), []string{"lone"})
	})
	t.Run("cluster", func(t *testing.T) {
		cc := newClusterClient(t, redistest.StartCluster(t))
		var tags []string
		for _, tag := range tagsOnEveryNode(t, cc) {
			tags = append(tags, tag)
		}
		check(t, cc, tags)
	})
}
