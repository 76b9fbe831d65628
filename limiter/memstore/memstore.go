// Package memstore is Warden's in-process limiter.Store: sharded maps under short mutexes,
// exact, all or nothing across the hits of one Take, with expiring entries. It serves a single
// replica when no Redis is configured, and the per-replica fallback of the "local" failure
// policy.
//
// It knows nothing of descriptors, domains or failure policies (package limiter decides which
// hits to send), and nothing of other replicas: counts are local to the process.
package memstore

import (
	"context"
	"errors"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/wardenhq/warden/limiter"
)

// Options configure a Store. The zero Options are valid.
type Options struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Shards is the number of independently locked maps, rounded up to a power of two.
	// Default 256.
	Shards int
	// SweepInterval is how often Run removes expired entries. Default 10s.
	SweepInterval time.Duration
}

// Store is an in-memory limiter.Store and limiter.Resetter.
//
// Keys are spread over shards by a hash of the key; a Take locks the shards its hits touch in
// ascending order (so concurrent Takes cannot deadlock), applies the hits in order, and rolls
// them back if any is refused. Taking from a key that already exists does not allocate.
//
// Entries carry the instant from which they are equivalent to an absent counter: such entries
// are treated as absent at once, and removed by Run's periodic sweep. Create a Store with New;
// it is safe for concurrent use.
type Store struct {
	now    func() time.Time
	seed   maphash.Seed
	mask   uint64
	sweep  time.Duration
	shards []shard
}

type mapKey struct{ tag, key string }

type entry struct {
	c      limiter.Counter
	alg    limiter.Algorithm
	expiry int64 // µs since the epoch; see limiter.Params.Expiry
	// p caches the Params of the limit last applied, lk (computing them takes a gcd).
	p  limiter.Params
	lk limitKey
}

// limitKey is a Limit without its Name: what its Params depend on.
type limitKey struct {
	alg                  limiter.Algorithm
	limit, burst, period int64
}

func keyOf(l *limiter.Limit) limitKey {
	return limitKey{l.Algorithm, l.Limit, l.Burst, int64(l.Period)}
}

// paramsFor returns l's Params, from e's cache when l is the limit e last saw.
func paramsFor(e *entry, l *limiter.Limit) limiter.Params {
	if e != nil && e.lk == keyOf(l) {
		return e.p
	}
	return l.Params()
}

type shard struct {
	mu sync.Mutex
	m  map[mapKey]*entry
	_  [48]byte // keep neighbouring shards' mutexes off one cache line
}

// New returns an empty Store.
func New(o Options) *Store {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Shards <= 0 {
		o.Shards = 256
	}
	n := 1
	for n < o.Shards {
		n <<= 1
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 10 * time.Second
	}
	s := &Store{now: o.Now, seed: maphash.MakeSeed(), mask: uint64(n - 1), sweep: o.SweepInterval, shards: make([]shard, n)}
	for i := range s.shards {
		s.shards[i].m = make(map[mapKey]*entry)
	}
	return s
}

var _ interface {
	limiter.Store
	limiter.Resetter
} = (*Store)(nil)

// errOutLen reports a caller bug: out must have one Status per hit.
var errOutLen = errors.New("memstore: len(out) != len(hits)")

// undo is what a rolled-back Take restores.
type undo struct {
	e       *entry
	c       limiter.Counter // At and N before the hit (Log is handled by Uncommit)
	expiry  int64
	alg     limiter.Algorithm
	p       limiter.Params
	cost    int64
	applied bool
}

// Take implements limiter.Store. It checks ctx only on entry: it never blocks for long.
func (s *Store) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if len(out) != len(hits) {
		return false, errOutLen
	}
	now := s.now().UnixMicro()

	// The shards to lock, sorted and deduplicated. Up to 16 hits stay on the stack.
	var idxBuf, hitBuf [16]uint32
	idx, hitShard := idxBuf[:0], hitBuf[:0]
	for i := range hits {
		sh := uint32(maphash.String(s.seed, hits[i].Key) & s.mask)
		hitShard = append(hitShard, sh)
		if !slices.Contains(idx, sh) {
			idx = append(idx, sh)
		}
	}
	slices.Sort(idx)
	for _, i := range idx {
		s.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range idx {
			s.shards[i].mu.Unlock()
		}
	}()

	// Up to 4 undos stay on the stack (152 bytes each); more spill to the heap. 16, like the
	// shard buffers above, made this frame 3.5 KB, which pushed the deeper Check path past the
	// 8 KB its goroutine's stack had grown to and cost a stack copy per call.
	var undoBuf [4]undo
	undos := undoBuf[:0]
	allowed := true
	for i := range hits {
		h := &hits[i]
		sh := &s.shards[hitShard[i]]
		mk := mapKey{tag, h.Key}
		e := sh.m[mk]
		p := paramsFor(e, &h.Limit)
		var zero limiter.Counter
		c := &zero
		if e != nil {
			if now >= e.expiry || e.alg != p.Algorithm {
				// Expired, or counted by another algorithm: absent.
				e.c = limiter.Counter{Log: e.c.Log[:0]}
				e.alg, e.expiry = p.Algorithm, 0
			}
			c = &e.c
		}
		out[i] = p.Eval(c, now, h.Cost)
		if !out[i].Allowed {
			allowed = false
			undos = append(undos, undo{})
			continue
		}
		if h.Cost <= 0 || !allowed {
			// A peek, or nothing will be committed anyway: no need to write.
			undos = append(undos, undo{})
			continue
		}
		if e == nil {
			e = &entry{alg: p.Algorithm}
			if p.Algorithm == limiter.SlidingLog {
				e.c.Log = make([]int64, 0, p.Limit)
			}
			sh.m[mk] = e
		}
		undos = append(undos, undo{e: e, c: e.c, expiry: e.expiry, alg: e.alg, p: p, cost: h.Cost, applied: true})
		p.Commit(&e.c, now, h.Cost)
		e.expiry, e.p, e.lk = p.Expiry(&e.c), p, keyOf(&h.Limit)
	}
	if allowed {
		return true, nil
	}
	s.rollback(tag, hits, out, hitShard, undos, now)
	return false, nil
}

// rollback undoes a refused Take's commits in reverse order, then reports the hits that this
// limit alone allowed as peeks. Its own function, so that the rare path's temporaries stay
// out of Take's frame.
func (s *Store) rollback(tag string, hits []limiter.Hit, out []limiter.Status, hitShard []uint32, undos []undo, now int64) {
	for i := len(undos) - 1; i >= 0; i-- {
		u := &undos[i]
		if !u.applied {
			continue
		}
		u.p.Uncommit(&u.e.c, u.cost)
		u.e.c.At, u.e.c.N = u.c.At, u.c.N
		u.e.expiry, u.e.alg = u.expiry, u.alg
	}
	for i := range hits {
		if !out[i].Allowed {
			continue
		}
		h := &hits[i]
		p := h.Limit.Params()
		var zero limiter.Counter
		c := &zero
		if e := s.shards[hitShard[i]].m[mapKey{tag, h.Key}]; e != nil && e.alg == p.Algorithm {
			c = &e.c
		}
		out[i] = p.Eval(c, now, 0)
	}
}

// Reset implements limiter.Resetter: the counter is forgotten.
func (s *Store) Reset(ctx context.Context, tag, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sh := &s.shards[maphash.String(s.seed, key)&s.mask]
	sh.mu.Lock()
	delete(sh.m, mapKey{tag, key})
	sh.mu.Unlock()
	return nil
}

// Run removes expired entries every SweepInterval until ctx ends, then returns nil. Expired
// entries are treated as absent whether or not Run is running; Run only frees their memory.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.sweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.sweepExpired(s.now().UnixMicro())
		}
	}
}

// sweepExpired removes the entries expired at now, one shard at a time, and returns how many
// it removed.
func (s *Store) sweepExpired(now int64) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k, e := range sh.m {
			if now >= e.expiry {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// Len returns the number of entries held, expired or not (for tests and metrics).
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// NonBlocking implements limiter.NonBlocking: Take never waits on I/O.
func (*Store) NonBlocking() bool { return true }
