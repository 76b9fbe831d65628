package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// scriptCalls is the number of EVALSHA and EVAL calls a Redis server has run.
func scriptCalls(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(info, "\r\n") {
		name, fields, ok := strings.Cut(line, ":")
		if !ok || name != "cmdstat_evalsha" && name != "cmdstat_eval" {
			continue
		}
		for f := range strings.SplitSeq(fields, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				k, _ := strconv.Atoi(v)
				n += k
			}
		}
	}
	return n
}

// TestSeveralTakesPerScript: concurrent Takes on one key, batched, run in fewer script calls
// than Takes (Redis's own count, INFO commandstats), and each is still decided exactly: the
// key admits its limit, no more, no less.
func TestSeveralTakesPerScript(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	s := newStore(t, client, redisstore.Options{Pipelines: 1})
	if err := s.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	const (
		goroutines = 64
		each       = 20
		limit      = 500
	)
	l := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: limit, Period: time.Hour}
	before := scriptCalls(t, client)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			out := make([]limiter.Status, 1)
			for range each {
				ok, err := s.Take(t.Context(), "multi", []limiter.Hit{{Key: "k", Limit: l, Cost: 1}}, out)
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
	scripts := scriptCalls(t, client) - before
	const takes = goroutines * each
	if got := admitted.Load(); got != limit {
		t.Errorf("admitted %d of %d, want exactly %d", got, takes, limit)
	}
	if scripts >= takes {
		t.Errorf("Redis ran %d script calls for %d Takes, want fewer", scripts, takes)
	}
	st := s.Stats()
	if st.Takes != takes || int(st.Scripts) != scripts || st.Scripts >= st.Takes {
		t.Errorf("Stats = %+v, want %d Takes in the %d script calls Redis counted", st, takes, scripts)
	}
	t.Logf("%d Takes in %d script calls (%.1f per call), %d round trips", takes, scripts, float64(takes)/float64(scripts), st.RoundTrips)
}

// TestBatchSequential: one batch mixing allowed and refused Takes on the same keys, of every
// algorithm, multi-hit Takes among them, is one script call and answers every Take exactly as
// the same Takes one after the other, each its own EVALSHA, at the same instant.
func TestBatchSequential(t *testing.T) {
	client, batched, oneByOne := batchedAndOneByOne(t)
	fw := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 3, Period: time.Hour}
	tb := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 2, Period: time.Minute}
	sw := limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: 2, Period: time.Minute}
	sl := limiter.Limit{Algorithm: limiter.SlidingLog, Limit: 2, Period: time.Minute}
	hit := func(key string, l limiter.Limit, cost int64) limiter.Hit {
		return limiter.Hit{Key: key, Limit: l, Cost: cost}
	}
	takes := [][]limiter.Hit{
		{hit("a", fw, 1)}, {hit("a", fw, 1)}, {hit("b", tb, 2)}, {hit("a", fw, 1)},
		{hit("a", fw, 1)},                  // refused: a is full
		{hit("a", fw, 0)},                  // a peek
		{hit("b", tb, 1)},                  // refused: b is empty
		{hit("c", sw, 1), hit("a", fw, 1)}, // refused by a: c is not charged, reported as a peek
		{hit("c", sw, 2)},                  // allowed: c is untouched
		{hit("c", sw, 1)},                  // refused
		{hit("d", sl, 1)}, {hit("d", sl, 1), hit("e", fw, 1)}, {hit("d", sl, 1)},
		{hit("e", fw, 2), hit("e", fw, 2)}, // the same key twice: refused by the second
		{hit("e", fw, 2)},                  // allowed: e had 1
		{hit("f", tb, 5)},                  // above the burst: never allowed
		{hit("e", fw, 1), hit("b", tb, 0), hit("d", sl, 0)},
	}
	type answer struct {
		Allowed bool
		Out     []limiter.Status
	}
	batch := make([]redisstore.BatchTake, len(takes))
	for i, hits := range takes {
		batch[i] = redisstore.BatchTake{Tag: "t", Hits: hits, Out: make([]limiter.Status, len(hits))}
	}
	before := scriptCalls(t, client)
	redisstore.TakeBatch(t.Context(), batched, client, batch)
	if n := scriptCalls(t, client) - before; n != 1 {
		t.Errorf("the batch of %d Takes ran as %d script calls, want 1", len(takes), n)
	}
	var got, want []answer
	for i, hits := range takes {
		if batch[i].Err != nil {
			t.Fatalf("batched Take %d: %v", i, batch[i].Err)
		}
		got = append(got, answer{batch[i].Allowed, batch[i].Out})
		out := make([]limiter.Status, len(hits))
		ok, err := oneByOne.Take(t.Context(), "t", hits, out)
		if err != nil {
			t.Fatalf("Take %d: %v", i, err)
		}
		want = append(want, answer{ok, out})
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("batched answers (-got +want, one Take after the other):\n%s", diff)
	}
	// The batch saw refusals and admissions on the same keys.
	var allowed, refused int
	for _, a := range want {
		if a.Allowed {
			allowed++
		} else {
			refused++
		}
	}
	if allowed < 5 || refused < 5 {
		t.Errorf("%d allowed, %d refused: the test no longer mixes them", allowed, refused)
	}
	// And left the same counters.
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		g, err1 := counterState(t, client, redisstore.Name(batched, "t", k))
		w, err2 := counterState(t, client, redisstore.Name(oneByOne, "t", k))
		if err1 != nil || err2 != nil || g != w || g == "" {
			t.Errorf("key %s: batched state %q (%v), one by one %q (%v)", k, g, err1, w, err2)
		}
	}
}

// TestClusterBatchAcrossSlots: on a Cluster, batches hold Takes of many slots on each master;
// Takes of one slot share a script call (fewer script calls than Takes, Redis's count on
// every master), Takes of other slots get their own (no CROSSSLOT), and every tag admits
// exactly its limit.
func TestClusterBatchAcrossSlots(t *testing.T) {
	cluster := redistest.StartCluster(t)
	cc := newClusterClient(t, cluster)
	s := newStore(t, cc, redisstore.Options{Pipelines: 1})
	if err := s.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	var masters []*redis.Client
	var mu sync.Mutex
	if err := cc.ForEachMaster(t.Context(), func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		masters = append(masters, c)
		mu.Unlock()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	calls := func() int {
		n := 0
		for _, m := range masters {
			n += scriptCalls(t, m)
		}
		return n
	}
	const (
		ntags      = 24
		limit      = 30
		goroutines = 48
		each       = 40
	)
	tags := make([]string, ntags)
	slots := map[int]bool{}
	for i := range tags {
		tags[i] = fmt.Sprintf("slot-%d", i)
		slots[redisstore.KeySlot("{"+tags[i]+"}")] = true
	}
	if len(slots) < ntags/2 {
		t.Fatalf("%d tags in %d slots", ntags, len(slots))
	}
	l := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: limit, Period: time.Hour}
	var admitted [ntags]atomic.Int64
	before := calls()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				tag := (g + i) % ntags
				// Two hits of one tag: one slot, whatever the batch around them.
				hits := []limiter.Hit{{Key: "a", Limit: l, Cost: 1}, {Key: "b", Limit: l, Cost: 1}}
				out := make([]limiter.Status, 2)
				ok, err := s.Take(t.Context(), tags[tag], hits, out)
				if err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if ok {
					admitted[tag].Add(1)
				}
			}
		})
	}
	wg.Wait()
	scripts := calls() - before
	const takes = goroutines * each
	for i := range tags {
		if got := admitted[i].Load(); got != limit {
			t.Errorf("tag %s admitted %d, want exactly %d", tags[i], got, limit)
		}
	}
	if scripts >= takes {
		t.Errorf("Redis ran %d script calls for %d Takes, want fewer", scripts, takes)
	}
	t.Logf("%d Takes of %d slots in %d script calls (%.1f per call)", takes, len(slots), scripts, float64(takes)/float64(scripts))
}

// counterState is the stored state of the counter of name: its field in its hash, or the
// DUMP of a sliding log's sorted set.
// batchedAndOneByOne starts a Redis and two stores on it, on one fixed instant: one that
// batches Takes into script calls (its script loaded), and one that sends each Take as its
// own EVALSHA.
func batchedAndOneByOne(t *testing.T) (client *redis.Client, batched, oneByOne *redisstore.Store) {
	t.Helper()
	client = newClient(t, redistest.Start(t).Addr())
	clock := &grid{t: t0}
	batched = newStore(t, client, redisstore.Options{Prefix: "batch:", Now: clock.Now})
	oneByOne = newStore(t, client, redisstore.Options{Prefix: "seq:", Now: clock.Now, Unbatched: true})
	if err := batched.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return client, batched, oneByOne
}

func counterState(t *testing.T, client *redis.Client, name string) (string, error) {
	t.Helper()
	if n, err := client.Exists(t.Context(), name).Result(); err != nil || n == 1 {
		if err != nil {
			return "", err
		}
		return client.Dump(t.Context(), name).Result()
	}
	n := len(name) - redisstore.FieldLen
	return client.HGet(t.Context(), name[:n], name[n:]).Result()
}

// TestBatchSpecs: a script call sends each distinct spec of its hits (algorithm, cost,
// period, limit and the algorithm's two derived values) once, and each hit its spec's index.
// One batch of Takes that share a few specs, among them limits that differ from another in
// one value only, on shared keys, and one batch of 256 hits of 256 distinct specs (as many as
// a call's keys), each answer and store exactly as the same Takes one by one.
func TestBatchSpecs(t *testing.T) {
	client, batched, oneByOne := batchedAndOneByOne(t)
	fw := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 3, Period: time.Hour}
	tb := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 4, Period: time.Minute, Burst: 6}
	limits := []limiter.Limit{
		fw,
		{Algorithm: limiter.FixedWindow, Limit: 4, Period: time.Hour},         // L
		{Algorithm: limiter.FixedWindow, Limit: 3, Period: 2 * time.Hour},     // P
		{Algorithm: limiter.SlidingWindow, Limit: 3, Period: time.Hour},       // algorithm
		{Algorithm: limiter.SlidingLog, Limit: 3, Period: time.Hour},          // algorithm
		{Algorithm: limiter.SlidingWindow, Limit: 3, Period: 7 * time.Second}, // P, x, y
		tb,
		{Algorithm: limiter.TokenBucket, Limit: 4, Period: time.Minute, Burst: 5},     // B
		{Algorithm: limiter.TokenBucket, Limit: 3, Period: time.Minute, Burst: 6},     // x, y
		{Algorithm: limiter.TokenBucket, Limit: 28, Period: time.Minute, Burst: 6},    // y
		{Algorithm: limiter.TokenBucket, Limit: 4, Period: 2 * time.Minute, Burst: 6}, // P, x
	}
	keys := []string{"a", "b", "c"}
	rng := rand.New(rand.NewPCG(3, 4))
	var shared []redisstore.BatchTake
	for range 64 {
		hits := make([]limiter.Hit, 1+rng.IntN(3))
		for i := range hits {
			hits[i] = limiter.Hit{Key: keys[rng.IntN(len(keys))], Limit: limits[rng.IntN(len(limits))], Cost: int64(rng.IntN(3))}
		}
		shared = append(shared, redisstore.BatchTake{Tag: "t", Hits: hits})
	}
	var distinct []redisstore.BatchTake
	for i := range 64 {
		hits := make([]limiter.Hit, 4)
		for j := range hits {
			l := fw
			l.Limit = int64(2 + 4*(63-i) + j) // 256 limits, the later Takes refused
			hits[j] = limiter.Hit{Key: "d" + strconv.Itoa(j), Limit: l, Cost: 1}
		}
		distinct = append(distinct, redisstore.BatchTake{Tag: "t", Hits: hits})
	}
	type answer struct {
		Allowed bool
		Out     []limiter.Status
	}
	for _, c := range []struct {
		name  string
		takes []redisstore.BatchTake
		specs int // distinct (limit, cost) pairs
		keys  []string
	}{
		{"shared", shared, 0, keys},
		{"distinct", distinct, 256, []string{"d0", "d1", "d2", "d3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The call's arguments: each spec once.
			specs := map[[2]any]bool{}
			nkeys, ntakes := 0, 0
			for _, tk := range c.takes {
				nkeys += len(tk.Hits)
				ntakes++
				if len(tk.Hits) > 1 {
					ntakes += len(tk.Hits)
				}
				for _, h := range tk.Hits {
					specs[[2]any{h.Limit, h.Cost}] = true
				}
			}
			if c.specs != 0 && len(specs) != c.specs {
				t.Fatalf("%d distinct specs, want %d", len(specs), c.specs)
			}
			args := redisstore.ScriptArgs(batched, c.takes)
			// evalsha, sha, numkeys, keys, now, min TTL, S, 6 per spec, the Takes.
			if want := 3 + nkeys + 3 + 6*len(specs) + ntakes; len(args) != want {
				t.Errorf("%d Takes of %d hits and %d specs: %d arguments, want %d", len(c.takes), nkeys, len(specs), len(args), want)
			}
			for i := range c.takes {
				c.takes[i].Out = make([]limiter.Status, len(c.takes[i].Hits))
			}
			before := scriptCalls(t, client)
			redisstore.TakeBatch(t.Context(), batched, client, c.takes)
			if n := scriptCalls(t, client) - before; n != 1 {
				t.Errorf("the batch of %d Takes ran as %d script calls, want 1", len(c.takes), n)
			}
			var got, want []answer
			allowed, refused := 0, 0
			for i, tk := range c.takes {
				if tk.Err != nil {
					t.Fatalf("batched Take %d: %v", i, tk.Err)
				}
				got = append(got, answer{tk.Allowed, tk.Out})
				out := make([]limiter.Status, len(tk.Hits))
				ok, err := oneByOne.Take(t.Context(), "t", tk.Hits, out)
				if err != nil {
					t.Fatalf("Take %d: %v", i, err)
				}
				want = append(want, answer{ok, out})
				if ok {
					allowed++
				} else {
					refused++
				}
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("batched answers (-got +want, one Take after the other):\n%s", diff)
			}
			if allowed < 5 || refused < 5 {
				t.Errorf("%d allowed, %d refused: the test no longer mixes them", allowed, refused)
			}
			for _, k := range c.keys {
				g, err1 := counterState(t, client, redisstore.Name(batched, "t", k))
				w, err2 := counterState(t, client, redisstore.Name(oneByOne, "t", k))
				if err1 != nil || err2 != nil || g != w || g == "" {
					t.Errorf("key %s: batched state %q (%v), one by one %q (%v)", k, g, err1, w, err2)
				}
			}
		})
	}
}
