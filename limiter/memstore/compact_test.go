package memstore

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/limiter"
)

// refStore is the plainest Store: one map of whole limiter.Counters by tag and key, exact
// expiry, no packing. The compact Store must answer every Take exactly as it does.
type refStore struct {
	m map[[2]string]*refEntry
}

type refEntry struct {
	c      limiter.Counter
	alg    limiter.Algorithm
	expiry int64
}

func (r *refStore) take(now int64, tag string, hits []limiter.Hit, out []limiter.Status) bool {
	// A refused Take restores what its commits changed; a stale counter (expired, or of
	// another algorithm) that a hit forgot stays forgotten.
	type saved struct {
		k      [2]string
		before *refEntry
	}
	var undos []saved
	allowed := true
	for i := range hits {
		h := &hits[i]
		p := h.Limit.Params()
		e := r.m[[2]string{tag, h.Key}]
		if e != nil && (now >= e.expiry || e.alg != p.Algorithm) {
			delete(r.m, [2]string{tag, h.Key})
			e = nil
		}
		var c limiter.Counter
		if e != nil {
			c = e.c
		}
		out[i] = p.Eval(&c, now, h.Cost)
		if !out[i].Allowed {
			allowed = false
			continue
		}
		if h.Cost <= 0 || !allowed {
			continue
		}
		if e == nil {
			e = &refEntry{alg: p.Algorithm}
			r.m[[2]string{tag, h.Key}] = e
		}
		var before *refEntry
		if len(e.c.Log) > 0 || e.c.At != 0 || e.c.N != 0 || e.expiry != 0 {
			before = &refEntry{c: e.c, alg: e.alg, expiry: e.expiry}
			before.c.Log = append([]int64(nil), e.c.Log...)
		}
		undos = append(undos, saved{k: [2]string{tag, h.Key}, before: before})
		c.Log = append([]int64(nil), c.Log...)
		p.Commit(&c, now, h.Cost)
		e.c, e.expiry = c, p.Expiry(&c)
	}
	if allowed {
		return true
	}
	for i := len(undos) - 1; i >= 0; i-- {
		if u := undos[i]; u.before == nil {
			delete(r.m, u.k)
		} else {
			r.m[u.k] = u.before
		}
	}
	for i := range hits {
		if out[i].Allowed {
			p := hits[i].Limit.Params()
			var c limiter.Counter
			if e := r.m[[2]string{tag, hits[i].Key}]; e != nil && e.alg == p.Algorithm && now < e.expiry {
				c = e.c
			}
			out[i] = p.Eval(&c, now, 0)
		}
	}
	return false
}

// TestMatchesReference runs random Takes (several hits, shared keys, every algorithm, costs
// up to the 2^32 limit, algorithm changes, refusals and rollbacks, resets) against the Store
// and refStore, and compares every answer.
func TestMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, shards := range []int{1, 4} {
		s := New(Options{Now: func() time.Time { return now }, Shards: shards})
		ref := &refStore{m: map[[2]string]*refEntry{}}
		// A key keeps its limit per algorithm (a limit changed under a live key is the one
		// case where the compact store's rounded expiry may forget a counter later).
		limitOf := func(key int, alg limiter.Algorithm) limiter.Limit {
			h := uint64(key)*7 + uint64(alg)
			l := limiter.Limit{Algorithm: alg, Period: []time.Duration{time.Second, 7 * time.Second, time.Minute, time.Hour}[h%4]}
			switch h % 3 {
			case 0:
				l.Limit = 3
			case 1:
				l.Limit = 1000
			default:
				l.Limit = 1 << 32
			}
			if alg == limiter.SlidingLog {
				l.Limit = 1 + int64(h%5)
			}
			if alg == limiter.TokenBucket && h%5 == 0 {
				l.Burst = 1 << 32
			}
			return l
		}
		for step := range 20000 {
			now = now.Add(time.Duration(rng.IntN(300)) * time.Millisecond)
			if rng.IntN(1000) == 0 {
				now = now.Add(time.Hour)
			}
			tag := []string{"a", "b"}[rng.IntN(2)]
			n := 1 + rng.IntN(3)
			hits := make([]limiter.Hit, n)
			for i := range hits {
				key := rng.IntN(12)
				alg := limiter.Algorithm(rng.IntN(4))
				if rng.IntN(4) > 0 {
					alg = limiter.Algorithm(key % 4)
				}
				l := limitOf(key, alg)
				cost := int64(rng.IntN(3))
				switch rng.IntN(10) {
				case 0:
					cost = l.Limit
				case 1:
					cost = l.Limit / 2
				case 2:
					cost = l.Limit + 1
				}
				name := strconv.Itoa(key)
				if key >= 9 {
					name = strings.Repeat("long ", idBuf/4) + name // hashed in two pieces
				}
				hits[i] = limiter.Hit{Key: name, Limit: l, Cost: cost}
			}
			if rng.IntN(200) == 0 {
				k := hits[0].Key
				if err := s.Reset(context.Background(), tag, k); err != nil {
					t.Fatal(err)
				}
				delete(ref.m, [2]string{tag, k})
			}
			got := make([]limiter.Status, n)
			want := make([]limiter.Status, n)
			gotOK, err := s.Take(context.Background(), tag, hits, got)
			if err != nil {
				t.Fatal(err)
			}
			wantOK := ref.take(now.UnixMicro(), tag, hits, want)
			if gotOK != wantOK || !gocmp.Equal(got, want) {
				t.Fatalf("shards %d, step %d, tag %s, hits %+v:\ngot  %v %+v\nwant %v %+v", shards, step, tag, hits, gotOK, got, wantOK, want)
			}
		}
		wide := 0
		for i := range s.shards {
			wide += len(s.shards[i].wide)
		}
		if wide == 0 {
			t.Errorf("shards %d: no counter went wide: the test misses that path", shards)
		}
	}
}

// TestWideCounts checks the counts that do not fit the packed slot: a fixed window at
// exactly 2^32 (33 bits) and a sliding-window bucket beyond 32 bits (stored wide), both
// through a refused Take's rollback.
func TestWideCounts(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow} {
		l := limiter.Limit{Algorithm: alg, Limit: 1 << 32, Period: time.Hour}
		out := make([]limiter.Status, 2)
		k := alg.String()
		refused := limiter.Hit{Key: "other", Limit: limiter.Limit{Limit: 1, Period: time.Hour}, Cost: 2}
		// Refused as a whole: the full take is rolled back.
		if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: k, Limit: l, Cost: 1 << 32}, refused}, out); ok {
			t.Fatalf("%v: Take with a refused hit: allowed", alg)
		}
		if out[0].Remaining != 1<<32 {
			t.Fatalf("%v: after the rollback: got remaining %d, want %d", alg, out[0].Remaining, int64(1)<<32)
		}
		if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: k, Limit: l, Cost: 1 << 32}}, out[:1]); !ok {
			t.Fatalf("%v: full take: refused", alg)
		}
		now = now.Add(time.Second)
		if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: k, Limit: l, Cost: 1}}, out[:1]); ok || out[0].Remaining != 0 {
			t.Fatalf("%v: one more: got %+v, want refused, remaining 0", alg, out[0])
		}
	}
}

// TestHashSpread measures what the collision bound in the package comment assumes: that each
// 64-bit half of an id spreads realistic keys (sequential user ids under one tag, the same
// key under many tags; short pairs hashed in one piece and long ones in two) like an
// independent random function. It counts collisions among the
// low 32 bits of each half, and among 16 bits of one half joined to 16 of the other, over 2^20
// keys: a random function gives n^2/2^33 = 128 on average (Poisson, standard deviation 11).
func TestHashSpread(t *testing.T) {
	if testing.Short() {
		t.Skip("4 million hashes")
	}
	s := New(Options{})
	const n = 1 << 20
	long := strings.Repeat("x", idBuf)
	for _, shape := range []string{"keys", "tags", "long keys", "long keys, tags"} {
		var ids []id
		for i := range n {
			switch shape {
			case "keys":
				ids = append(ids, s.idOf("domain", "domain|user=user-"+strconv.Itoa(i)))
			case "tags":
				ids = append(ids, s.idOf("tenant-"+strconv.Itoa(i), "domain|user=alice"))
			case "long keys":
				ids = append(ids, s.idOf("domain", long+strconv.Itoa(i)))
			default:
				ids = append(ids, s.idOf("tenant-"+strconv.Itoa(i), long))
			}
		}
		for _, c := range []struct {
			name string
			f    func(id) uint32
		}{
			{"first half", func(k id) uint32 { return uint32(k[0]) }},
			{"second half", func(k id) uint32 { return uint32(k[1] >> 32) }},
			{"both halves", func(k id) uint32 { return uint32(k[0]>>48) | uint32(k[1])<<16 }},
		} {
			vs := make([]uint32, len(ids))
			for i, k := range ids {
				vs[i] = c.f(k)
			}
			slices.Sort(vs)
			coll := 0
			for i := 1; i < len(vs); i++ {
				if vs[i] == vs[i-1] {
					coll++
				}
			}
			if coll < 64 || coll > 256 {
				t.Errorf("%s, %s: %d collisions in 32 bits, want about 128 (64..256)", shape, c.name, coll)
			}
		}
		slices.SortFunc(ids, func(a, b id) int { return cmp.Compare(a[0], b[0])*2 + cmp.Compare(a[1], b[1]) })
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				t.Fatalf("%s: two keys with one 128-bit id", shape)
			}
		}
	}
}

// TestSweepWhileTaking runs the sweep, which releases a shard's lock between batches in the
// middle of iterating its maps, against concurrent Takes that add and forget counters (run it
// with -race): every live counter must survive the sweeps with its count.
func TestSweepWhileTaking(t *testing.T) {
	var clock atomic.Int64
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return base.Add(time.Duration(clock.Load())) }, Shards: 2})
	ctx := context.Background()
	short := limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: 5, Period: time.Second}
	long := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 5, Period: 24 * time.Hour}
	out := make([]limiter.Status, 1)
	// Counters that must outlive every sweep: 4 units taken of 5.
	for i := range 500 {
		if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: "keep" + strconv.Itoa(i), Limit: long, Cost: 4}}, out); !ok {
			t.Fatal("keep: refused")
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		out := make([]limiter.Status, 1)
		for i := range 20000 {
			clock.Add(int64(time.Millisecond))
			if _, err := s.Take(ctx, "t", []limiter.Hit{{Key: "churn" + strconv.Itoa(i%3000), Limit: short, Cost: 1}}, out); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for sweeps := 0; ; sweeps++ {
		select {
		case <-done:
			for i := range 500 {
				if _, _ = s.Take(ctx, "t", []limiter.Hit{{Key: "keep" + strconv.Itoa(i), Limit: long}}, out); out[0].Remaining != 1 {
					t.Fatalf("keep%d after %d sweeps: got remaining %d, want 1", i, sweeps, out[0].Remaining)
				}
			}
			return
		default:
			s.sweepExpired(base.Add(time.Duration(clock.Load())).UnixMicro())
		}
	}
}

// TestRefusedTakeKeepsCounts: a Take refused by its second hit, of another algorithm on the
// same key, leaves the first hit's counter as it was. (The old store forgot what the key had
// counted before the Take: 3 units vanished.)
func TestRefusedTakeKeepsCounts(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	sw := limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: 10, Period: time.Minute}
	tb := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 10, Period: time.Minute}
	out := make([]limiter.Status, 2)
	if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: "k", Limit: sw, Cost: 3}}, out[:1]); !ok {
		t.Fatal("first take: refused")
	}
	if ok, _ := s.Take(ctx, "t", []limiter.Hit{{Key: "k", Limit: sw, Cost: 1}, {Key: "k", Limit: tb, Cost: 11}}, out); ok {
		t.Fatal("take with a cost above the bucket: allowed")
	}
	if out[0].Remaining != 7 {
		t.Errorf("refused take, first hit's status: got remaining %d, want 7", out[0].Remaining)
	}
	if s.Take(ctx, "t", []limiter.Hit{{Key: "k", Limit: sw}}, out[:1]); out[0].Remaining != 7 {
		t.Errorf("after the refused take: got remaining %d, want 7", out[0].Remaining)
	}
}
