// Package memstore is Warden's in-process limiter.Store: sharded maps under short mutexes,
// exact, all or nothing across the hits of one Take, with expiring entries. It serves a single
// replica when no Redis is configured, and the per-replica fallback of the "local" failure
// policy.
//
// It knows nothing of descriptors, domains or failure policies (package limiter decides which
// hits to send), and nothing of other replicas: counts are local to the process.
//
// # Memory
//
// A counter is 32 bytes in a Go map without pointers (so the garbage collector never scans
// it): a 128-bit hash of its tag and key, and the algorithm's state packed in 16 bytes (see
// slot). A sliding window is 72 bytes in a second such map (its 11 bucket counts in 32 bits
// each, see window); a sliding log, and the rare count beyond 32 bits, keep the whole
// limiter.Counter on the heap.
// Measured with TestMemoryPerKey (memory_test.go): 65 to 85 bytes of resident memory per live
// token-bucket or fixed-window key (the maps' load varies as they grow), 165 per sliding window;
// the README gives the figures.
//
// Keys are not stored: two (tag, key) pairs are the same counter when their 128-bit hashes are
// equal. The hash is two 64-bit hash/maphash values under seeds drawn at random per Store and
// never shown. For n live keys, each Take of a new key meets an existing one with probability
// at most n/2^128 if maphash behaves as a random function of its seed: with 10 million live
// keys and a million new keys a second for a century, the chance of one wrong count is below
// 10^-16. (maphash is not a cryptographic hash: the bound holds for keys chosen without
// knowledge of the seeds.) TestHashSpread checks that the two halves spread realistic keys like
// independent random functions.
package memstore

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
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
// Entries carry the instant (rounded up to expiryUnit) from which they are equivalent to an
// absent counter: such entries are treated as absent, and removed by Run's periodic sweep.
// Create a Store with New; it is safe for concurrent use.
type Store struct {
	now func() time.Time
	// seeds hash the two halves of an id; tagSeeds a long key's tag (see idOf).
	seeds, tagSeeds [2]maphash.Seed
	mask            uint64
	sweep           time.Duration
	shards          []shard
}

// id names a counter: the 128-bit hash of its tag and key.
type id [2]uint64

// slot is a token bucket's or a fixed window's state, 16 bytes without pointers:
// Counter.At in at, Counter.N in n (low 32 bits) and nHigh. A wide slot (SlidingLog, or a
// count that does not fit) has its Counter in shard.wide.
type slot struct {
	at int64
	n  uint32
	// meta packs expiry<<4 | nHigh<<3 | wide<<2 | algorithm. expiry is the instant of
	// limiter.Params.Expiry in expiryUnits since the Unix epoch, rounded up; neverExpires
	// when beyond 28 bits (the year 2106).
	meta uint32
}

// expiryUnit is the resolution of a slot's expiry: 16 s, so that 28 bits reach the year 2106.
// Rounding up only delays the moment an entry is forgotten: an expired counter is equivalent
// to an absent one.
const (
	expiryUnit   = 16_000_000 // µs
	neverExpires = 1<<28 - 1
	wideBit      = 1 << 2
	nHighBit     = 1 << 3
)

func (s slot) alg() limiter.Algorithm { return limiter.Algorithm(s.meta & 3) }
func (s slot) wide() bool             { return s.meta&wideBit != 0 }

// expiry is the instant (µs) from which the slot is equivalent to an absent counter.
func (s slot) expiry() int64 {
	u := int64(s.meta >> 4)
	if u == neverExpires {
		return math.MaxInt64
	}
	return u * expiryUnit
}

func packMeta(alg limiter.Algorithm, expiry int64, wide bool, nHigh uint32) uint32 {
	var u int64
	switch {
	case expiry <= 0:
		u = 0
	case expiry > (neverExpires-1)*expiryUnit:
		u = neverExpires
	default:
		u = (expiry + expiryUnit - 1) / expiryUnit
	}
	m := uint32(u)<<4 | nHigh<<3 | uint32(alg)&3
	if wide {
		m |= wideBit
	}
	return m
}

// window is a sliding window's state, 56 bytes without pointers: Counter.At in at, its Log
// in 32 bits a bucket, meta as in slot.
type window struct {
	at   int64
	meta uint32
	b    [limiter.SlidingBuckets + 1]uint32
}

func (w *window) expiry() int64 { return slot{meta: w.meta}.expiry() }

type shard struct {
	mu sync.Mutex
	m  map[id]slot
	// A key is in m or in sw (its sliding window), not both; wide holds the Counters of the
	// entries m marks wide.
	sw   map[id]window
	wide map[id]*limiter.Counter
	// params caches the Params of the limits last seen (computing them takes a gcd).
	params [8]cachedParams
	// log is a sliding window's Counter.Log while a Take works on it.
	log [limiter.SlidingBuckets + 1]int64
}

type cachedParams struct {
	lk limitKey
	ok bool
	p  limiter.Params
}

// limitKey is a Limit without its Name: what its Params depend on.
type limitKey struct {
	alg                  limiter.Algorithm
	limit, burst, period int64
}

// paramsFor returns l's Params, from the shard's cache when it holds them.
func (sh *shard) paramsFor(l *limiter.Limit) limiter.Params {
	lk := limitKey{l.Algorithm, l.Limit, l.Burst, int64(l.Period)}
	h := uint64(lk.limit)*0x9e3779b97f4a7c15 ^ uint64(lk.period)*0xc2b2ae3d27d4eb4f ^ uint64(lk.burst) ^ uint64(lk.alg)
	c := &sh.params[h>>61]
	if !c.ok || c.lk != lk {
		c.lk, c.ok, c.p = lk, true, l.Params()
	}
	return c.p
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
	s := &Store{now: o.Now, mask: uint64(n - 1), sweep: o.SweepInterval, shards: make([]shard, n)}
	for i := range 2 {
		s.seeds[i], s.tagSeeds[i] = maphash.MakeSeed(), maphash.MakeSeed()
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.m, sh.sw, sh.wide = make(map[id]slot), make(map[id]window), make(map[id]*limiter.Counter)
	}
	return s
}

var _ interface {
	limiter.Store
	limiter.Resetter
} = (*Store)(nil)

// errOutLen reports a caller bug: out must have one Status per hit.
var errOutLen = errors.New("memstore: len(out) != len(hits)")

// idBuf bounds the tag and key that idOf hashes in one piece.
const idBuf = 128

// idOf returns the id of tag's key. A short pair is hashed in one piece, under each seed:
// len(tag) as one byte, tag, key (so no two pairs give the same bytes). A longer one is the
// xor of its key's and its tag's hashes under seeds of their own.
func (s *Store) idOf(tag, key string) id {
	if n := 1 + len(tag) + len(key); n <= idBuf && len(tag) < 256 {
		var buf [idBuf]byte
		buf[0] = byte(len(tag))
		copy(buf[1+copy(buf[1:], tag):], key)
		return id{maphash.Bytes(s.seeds[0], buf[:n]), maphash.Bytes(s.seeds[1], buf[:n])}
	}
	return id{
		maphash.String(s.seeds[0], key) ^ maphash.String(s.tagSeeds[0], tag),
		maphash.String(s.seeds[1], key) ^ maphash.String(s.tagSeeds[1], tag),
	}
}

// undo is what a rolled-back Take restores: the state before one committed hit.
type undo struct {
	k    id
	cost int64
	// had reports that the key held a live counter: old, or oldSW when inSW.
	had, inSW bool
	old       slot
	oldSW     window
	// w is a wide counter, oldAt and oldN its At and N (its Log is handled by Uncommit).
	w           *limiter.Counter
	oldAt, oldN int64
	shard       uint32
	hit         uint32
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
	if len(hits) == 1 {
		return s.takeOne(tag, &hits[0], &out[0], now), nil
	}

	// The shards to lock, sorted and deduplicated. Up to 16 hits stay on the stack.
	var idxBuf, hitBuf [16]uint32
	var idBuf [16]id
	idx, hitShard, ids := idxBuf[:0], hitBuf[:0], idBuf[:0]
	for i := range hits {
		k := s.idOf(tag, hits[i].Key)
		sh := uint32(k[0] & s.mask)
		ids = append(ids, k)
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

	// Up to 4 undos stay on the stack; more spill to the heap. (Take's frame is on the Check
	// path: a frame of several KB cost a stack copy per call.)
	var undoBuf [4]undo
	undos := undoBuf[:0]
	allowed := true
	for i := range hits {
		h := &hits[i]
		sh := &s.shards[hitShard[i]]
		k := ids[i]
		p := sh.paramsFor(&h.Limit)
		c, sl, inSW, had := sh.load(k, &p, now, true)
		out[i] = p.Eval(&c, now, h.Cost)
		if !out[i].Allowed {
			allowed = false
			continue
		}
		if h.Cost <= 0 || !allowed {
			// A peek, or nothing will be committed anyway: no need to write.
			continue
		}
		if i < len(hits)-1 {
			// (Should the last hit be refused, it commits nothing: no undo.)
			undos = append(undos, undo{k: k, cost: h.Cost, had: had, inSW: inSW, old: sl, oldAt: c.At, oldN: c.N, shard: hitShard[i], hit: uint32(i)})
			switch u := &undos[len(undos)-1]; {
			case inSW:
				u.oldSW = sh.sw[k]
			case had && sl.wide():
				u.w = sh.wide[k]
			}
		}
		if p.Algorithm == limiter.SlidingLog && c.Log == nil {
			c.Log = make([]int64, 0, p.Limit)
		}
		p.Commit(&c, now, h.Cost)
		sh.store(k, &p, &c, had && !inSW && sl.wide())
	}
	if allowed {
		return true, nil
	}
	s.rollback(hits, out, ids, hitShard, undos, now)
	return false, nil
}

// takeOne is Take for a single hit: one shard, nothing to roll back.
func (s *Store) takeOne(tag string, h *limiter.Hit, out *limiter.Status, now int64) bool {
	k := s.idOf(tag, h.Key)
	sh := &s.shards[k[0]&s.mask]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.paramsFor(&h.Limit)
	c, sl, inSW, had := sh.load(k, &p, now, true)
	*out = p.Eval(&c, now, h.Cost)
	if out.Allowed && h.Cost > 0 {
		if p.Algorithm == limiter.SlidingLog && c.Log == nil {
			c.Log = make([]int64, 0, p.Limit)
		}
		p.Commit(&c, now, h.Cost)
		sh.store(k, &p, &c, had && !inSW && sl.wide())
	}
	return out.Allowed
}

// load returns the counter k holds for p's algorithm at now, the slot it came from (when in
// m), whether it came from sw instead, and whether there was one. A counter of another
// algorithm, or expired, is absent; forget removes it at once (even for a peek), as a Take
// does. A sliding window's Log is the shard's scratch buffer, valid until the next load on
// the shard; a wide counter's is the stored one.
func (sh *shard) load(k id, p *limiter.Params, now int64, forget bool) (c limiter.Counter, sl slot, inSW, ok bool) {
	if p.Algorithm == limiter.SlidingWindow {
		c.Log = sh.log[:0]
	}
	if p.Algorithm == limiter.SlidingWindow {
		if w, found := sh.sw[k]; found {
			if now >= w.expiry() {
				if forget {
					delete(sh.sw, k)
				}
				return c, slot{}, false, false
			}
			for i := range w.b {
				sh.log[i] = int64(w.b[i])
			}
			c.At, c.Log = w.at, sh.log[:]
			return c, slot{}, true, true
		}
	}
	sl, ok = sh.m[k]
	if !ok {
		if forget && p.Algorithm != limiter.SlidingWindow && len(sh.sw) > 0 {
			delete(sh.sw, k) // a sliding window is a counter of another algorithm
		}
		return c, sl, false, false
	}
	if now >= sl.expiry() || sl.alg() != p.Algorithm {
		if forget {
			sh.remove(k)
		}
		return c, slot{}, false, false
	}
	if sl.wide() {
		return *sh.wide[k], sl, false, true
	}
	c.At = sl.at
	c.N = int64(sl.n)
	if sl.meta&nHighBit != 0 {
		c.N |= 1 << 32
	}
	return c, sl, false, true
}

// store saves c, committed under p, as k's counter; wide reports that k was wide.
func (sh *shard) store(k id, p *limiter.Params, c *limiter.Counter, wide bool) {
	exp := p.Expiry(c)
	if !wide {
		switch p.Algorithm {
		case limiter.SlidingLog:
			wide = true
		case limiter.SlidingWindow:
			w := window{at: c.At, meta: packMeta(p.Algorithm, exp, false, 0)}
			for i, v := range c.Log {
				if v < 0 || v > math.MaxUint32 {
					wide = true
					break
				}
				w.b[i] = uint32(v)
			}
			if !wide {
				sh.sw[k] = w
				return
			}
			delete(sh.sw, k)
		default:
			if c.N >= 0 && c.N < 1<<33 {
				sh.m[k] = slot{at: c.At, n: uint32(c.N), meta: packMeta(p.Algorithm, exp, false, uint32(c.N>>32))}
				return
			}
			wide = true
		}
	}
	// A wide counter keeps its own Log (a sliding window's is copied off the scratch buffer).
	w := sh.wide[k]
	if w == nil {
		w = new(limiter.Counter)
		sh.wide[k] = w
	}
	log := c.Log
	if p.Algorithm == limiter.SlidingWindow && (len(log) == 0 || &log[0] == &sh.log[0]) {
		log = append(w.Log[:0], c.Log...)
	}
	*w = limiter.Counter{At: c.At, N: c.N, Log: log}
	sh.m[k] = slot{at: c.At, meta: packMeta(p.Algorithm, exp, true, 0)}
}

// remove forgets k.
func (sh *shard) remove(k id) {
	if sl, ok := sh.m[k]; ok {
		delete(sh.m, k)
		if sl.wide() {
			delete(sh.wide, k)
		}
	}
	if len(sh.sw) > 0 {
		delete(sh.sw, k)
	}
}

// rollback undoes a refused Take's commits in reverse order, then reports the hits that this
// limit alone allowed as peeks. Its own function, so that the rare path's temporaries stay
// out of Take's frame.
func (s *Store) rollback(hits []limiter.Hit, out []limiter.Status, ids []id, hitShard []uint32, undos []undo, now int64) {
	for i := len(undos) - 1; i >= 0; i-- {
		u := &undos[i]
		sh := &s.shards[u.shard]
		switch {
		case !u.had:
			sh.remove(u.k)
		case u.inSW:
			sh.remove(u.k)
			sh.sw[u.k] = u.oldSW
		case u.old.wide():
			// A later hit may have forgotten the key: put the counter back.
			p := sh.paramsFor(&hits[u.hit].Limit)
			p.Uncommit(u.w, u.cost)
			u.w.At, u.w.N = u.oldAt, u.oldN
			sh.m[u.k], sh.wide[u.k] = u.old, u.w
		default:
			sh.remove(u.k)
			sh.m[u.k] = u.old
		}
	}
	for i := range hits {
		if !out[i].Allowed {
			continue
		}
		sh := &s.shards[hitShard[i]]
		p := sh.paramsFor(&hits[i].Limit)
		c, _, _, _ := sh.load(ids[i], &p, now, false)
		out[i] = p.Eval(&c, now, 0)
	}
}

// Reset implements limiter.Resetter: the counter is forgotten.
func (s *Store) Reset(ctx context.Context, tag, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	k := s.idOf(tag, key)
	sh := &s.shards[k[0]&s.mask]
	sh.mu.Lock()
	sh.remove(k)
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

// sweepBatch bounds the entries a sweep visits under one hold of a shard's lock.
const sweepBatch = 256

// sweepExpired removes the entries expired at now and returns how many it removed. It visits
// one shard at a time and releases the shard's lock every sweepBatch entries, so that a Take
// never waits for more than a batch. (Takes may add or remove entries between batches: the
// map's iteration allows both, and what they add is not expired.)
func (s *Store) sweepExpired(now int64) int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		seen := 0
		pause := func() {
			if seen++; seen%sweepBatch == 0 {
				sh.mu.Unlock()
				sh.mu.Lock()
			}
		}
		for k, sl := range sh.m {
			if now >= sl.expiry() {
				sh.remove(k)
				n++
			}
			pause()
		}
		for k, w := range sh.sw {
			if now >= w.expiry() {
				delete(sh.sw, k)
				n++
			}
			pause()
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
		n += len(sh.m) + len(sh.sw)
		sh.mu.Unlock()
	}
	return n
}

// NonBlocking implements limiter.NonBlocking: Take never waits on I/O.
func (*Store) NonBlocking() bool { return true }
