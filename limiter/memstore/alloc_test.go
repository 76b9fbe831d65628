package memstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/wardenhq/warden/limiter"
)

var algorithms = []limiter.Algorithm{limiter.TokenBucket, limiter.SlidingWindow, limiter.FixedWindow, limiter.SlidingLog}

// TestTakeAllocs guards the zero-allocation path: a Take on keys that exist.
func TestTakeAllocs(t *testing.T) {
	for _, alg := range algorithms {
		t.Run(alg.String(), func(t *testing.T) {
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			s := New(Options{Now: func() time.Time { return now }})
			hits := []limiter.Hit{
				{Key: "a", Limit: limiter.Limit{Algorithm: alg, Limit: 1000, Period: time.Second}, Cost: 1},
				{Key: "b", Limit: limiter.Limit{Algorithm: alg, Limit: 1000, Period: time.Hour}, Cost: 1},
			}
			out := make([]limiter.Status, len(hits))
			ctx := context.Background()
			take := func() {
				now = now.Add(time.Millisecond)
				if _, err := s.Take(ctx, "tag", hits, out); err != nil {
					t.Fatal(err)
				}
			}
			take()
			if got := testing.AllocsPerRun(200, take); got != 0 {
				t.Errorf("Take on existing keys: got %v allocs per run, want 0", got)
			}
			// A refused Take (rolled back) allocates nothing either.
			hits[0].Cost = 2000
			if got := testing.AllocsPerRun(200, take); got != 0 {
				t.Errorf("refused Take: got %v allocs per run, want 0", got)
			}
		})
	}
}

func TestSweep(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	out := make([]limiter.Status, 1)
	for i, p := range []time.Duration{time.Second, time.Minute, time.Hour} {
		for _, alg := range algorithms {
			h := []limiter.Hit{{Key: fmt.Sprint(alg, i), Limit: limiter.Limit{Algorithm: alg, Limit: 10, Period: p}, Cost: 10}}
			if _, err := s.Take(ctx, "t", h, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A peek creates nothing.
	if _, err := s.Take(ctx, "t", []limiter.Hit{{Key: "peek", Limit: limiter.Limit{Limit: 1, Period: time.Second}}}, out); err != nil {
		t.Fatal(err)
	}
	for _, st := range []struct {
		at          time.Duration
		removed     int
		left        int
		description string
	}{
		{0, 0, 12, "nothing expired yet"},
		// Expiry instants are rounded up to expiryUnit (16 s): an entry is never removed
		// before it expires, at most 16 s after.
		{time.Second, 0, 12, "1s limits, rounded up"},
		{expiryUnit * time.Microsecond, 4, 8, "1s limits (the sliding window's 1.1 s too)"},
		{2 * time.Minute, 4, 4, "1m limits"},
		{2 * time.Hour, 4, 0, "1h limits"},
	} {
		if got := s.sweepExpired(now.Add(st.at).UnixMicro()); got != st.removed {
			t.Errorf("sweep at %v (%s): got %d removed, want %d", st.at, st.description, got, st.removed)
		}
		if got := s.Len(); got != st.left {
			t.Errorf("after the sweep at %v: got %d entries, want %d", st.at, got, st.left)
		}
	}
}

func TestRunStops(t *testing.T) {
	s := New(Options{SweepInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: got %v, want nil", err)
	}
}

func BenchmarkTake(b *testing.B) {
	for _, alg := range algorithms {
		for _, keys := range []int{1, 1000, 1000000} {
			b.Run(fmt.Sprintf("%v/keys=%d", alg, keys), func(b *testing.B) {
				var clock atomic.Int64
				clock.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
				s := New(Options{Now: func() time.Time { return time.Unix(0, clock.Add(100)) }})
				names := make([]string, keys)
				for i := range names {
					names[i] = fmt.Sprintf("key-%d", i)
				}
				l := limiter.Limit{Algorithm: alg, Limit: 1000, Period: time.Second}
				// Every key exists before the timer starts: this is a Take on known keys.
				out := make([]limiter.Status, 1)
				for _, k := range names {
					if _, err := s.Take(context.Background(), "tag", []limiter.Hit{{Key: k, Limit: l, Cost: 1}}, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					hits := []limiter.Hit{{Limit: l, Cost: 1}}
					out := make([]limiter.Status, 1)
					ctx := context.Background()
					i := 0
					for pb.Next() {
						hits[0].Key = names[i%keys]
						i++
						if _, err := s.Take(ctx, "tag", hits, out); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkRateAllowN is the yardstick: golang.org/x/time/rate on one limiter.
func BenchmarkRateAllowN(b *testing.B) {
	lim := rate.NewLimiter(1000, 1000)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			lim.AllowN(now, 1)
		}
	})
}
