package redisstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// reference is the Take of limiter/memstore reduced to its semantics, on the pure functions
// of limiter/algo.go: hits in order against the state the previous ones left, commits only
// while every hit so far is allowed, and, when any is refused, a rollback and the allowed hits
// reported as peeks. Expiry is left out: algo.go's Expiry is when a counter becomes
// equivalent to an absent one.
type reference struct {
	counters map[string]*limiter.Counter
}

func (r *reference) take(now int64, hits []limiter.Hit, out []limiter.Status) bool {
	saved := make(map[string]limiter.Counter, len(r.counters))
	for k, c := range r.counters {
		saved[k] = limiter.Counter{At: c.At, N: c.N, Log: slices.Clone(c.Log)}
	}
	counter := func(key string) *limiter.Counter {
		c := r.counters[key]
		if c == nil {
			c = &limiter.Counter{}
			r.counters[key] = c
		}
		return c
	}
	allowed := true
	for i, h := range hits {
		p := h.Limit.Params()
		c := counter(h.Key)
		out[i] = p.Eval(c, now, h.Cost)
		if !out[i].Allowed {
			allowed = false
			continue
		}
		if h.Cost > 0 && allowed {
			p.Commit(c, now, h.Cost)
		}
	}
	if allowed {
		return true
	}
	r.counters = make(map[string]*limiter.Counter, len(saved))
	for k, c := range saved {
		r.counters[k] = &c
	}
	for i, h := range hits {
		if out[i].Allowed {
			p := h.Limit.Params()
			out[i] = p.Eval(counter(h.Key), now, 0)
		}
	}
	return false
}

// TestMirrorsAlgo drives the store and the reference through the same random walk of Takes
// (several keys and algorithms, odd periods, costs above the quota, one key twice in a Take)
// and requires the same answer, field for field, at every step, on each of the paths of a
// lone Take through take.lua.
func TestMirrorsAlgo(t *testing.T) {
	srv := redistest.Start(t)
	limits := []limiter.Limit{
		{Name: "tb", Algorithm: limiter.TokenBucket, Limit: 3, Period: time.Second, Burst: 5},
		{Name: "tb-odd", Algorithm: limiter.TokenBucket, Limit: 7, Period: 1001 * time.Microsecond},
		{Name: "sw", Algorithm: limiter.SlidingWindow, Limit: 4, Period: 333333 * time.Microsecond},
		{Name: "sw-long", Algorithm: limiter.SlidingWindow, Limit: 5, Period: 3 * time.Second},
		{Name: "sw-slack", Algorithm: limiter.SlidingWindow, Limit: 23, Period: 700001 * time.Microsecond},
		{Name: "fw", Algorithm: limiter.FixedWindow, Limit: 3, Period: 250 * time.Millisecond},
		{Name: "sl", Algorithm: limiter.SlidingLog, Limit: 4, Period: 400 * time.Millisecond},
	}
	for _, m := range paths {
		t.Run(m.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			var clock grid
			at := t0.Add(123456789 * time.Microsecond)
			clock.Set(at)
			s := newStore(t, pathClient(newClient(t, srv.Addr()), m.general), redisstore.Options{Now: clock.Now, Unbatched: m.unbatched})
			ref := &reference{counters: map[string]*limiter.Counter{}}
			for step := range 3000 {
				at = at.Add(time.Duration(rng.IntN(120000)) * time.Microsecond)
				clock.Set(at)
				hits := make([]limiter.Hit, 1+rng.IntN(3))
				for i := range hits {
					j := rng.IntN(len(limits))
					hits[i] = limiter.Hit{Key: m.name + limits[j].Name, Limit: limits[j], Cost: int64(rng.IntN(7)) / 2}
				}
				got := make([]limiter.Status, len(hits))
				want := make([]limiter.Status, len(hits))
				gotOK, err := s.Take(t.Context(), "mirror", hits, got)
				if err != nil {
					t.Fatalf("step %d: Take: %v", step, err)
				}
				wantOK := ref.take(at.UnixMicro(), hits, want)
				if gotOK != wantOK {
					t.Fatalf("step %d: allowed = %v, want %v (hits %s)", step, gotOK, wantOK, describe(hits))
				}
				if diff := cmp.Diff(got, want); diff != "" {
					t.Fatalf("step %d at %v: statuses (-got +want) for %s:\n%s", step, at.Sub(t0), describe(hits), diff)
				}
			}
		})
	}
}

func describe(hits []limiter.Hit) string {
	s := ""
	for _, h := range hits {
		s += fmt.Sprintf("[%s cost %d] ", h.Key, h.Cost)
	}
	return s
}
