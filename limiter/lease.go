package limiter

import (
	"context"
	"sync"
	"time"
)

// Quota leasing (RateLimit.Lease). A replica keeps, per counter key, a slice of units that
// the store already counted: a request whose every limit is leased and covered by its slice
// is decided here, without a store call (Source FromLease). When a slice cannot cover a hit's
// cost, or has expired, that hit goes to the store with the cost of a whole slice
// (max(Units, cost)); the hits that were covered stay debited locally meanwhile, so the
// request is still all or nothing. If the store refuses the whole slices, the same hits are
// asked again with exactly their cost, so that the limit can be reached exactly; only a
// refusal of that denies the request, and the local debits are then given back.
//
// One refill per key is in flight at a time: a request that finds its slice short while
// another request of this replica is refilling it waits for that refill (as long as a store
// call) and tries the slice again, then asks the store for exactly its own cost if it must
// wait a second time. So a burst neither makes one replica take many slices at once (which
// would strand them, refused to the other replicas) nor sends the burst to the store.
//
// The bounds, with N replicas and unit costs, are stated on Lease: none beyond the store's for
// a fixed window (a slice never outlives the window its units were counted in: its expiry is
// at most the window's end as the store reported it, measured from before the call), rate*TTL
// beyond the store's for a token bucket (a unit is admitted at most TTL after the store
// debited it), and at most Units-1 units stranded per replica.

// leaseHit is one hit's state in leaseTake.
type leaseHit struct {
	state uint8
	gen   uint32 // the slice generation a covered hit was debited from (for a refund)
}

const (
	leaseCovered = iota // debited from the local slice
	leaseRefill         // this request refills the slice: asks the store for a whole slice
	leaseDirect         // asks the store for exactly its cost (a refill is in flight, or no room)
	leaseWait           // a refill is in flight: wait for it and try again
)

// leaseShards and maxLeasesPerShard bound the table: 65536 leased keys per replica. A key
// beyond that is decided by the store, as without a lease.
const (
	leaseShards       = 32
	maxLeasesPerShard = 2048
)

// leaseTable holds a replica's slices. The zero value is ready; it is safe for concurrent use.
type leaseTable struct {
	shards [leaseShards]leaseShard
}

type leaseShard struct {
	mu sync.Mutex
	m  map[string]*lease
}

// lease is one key's slice.
type lease struct {
	lim     Limit // the limit the units were counted under: a request under another limit (a tier, a reload) does not use them
	left    int64 // units left in the slice
	exp     int64 // unix ns: the slice is unusable from then on
	end     int64 // unix ns: the end of the fixed window the units were counted in
	gen     uint32
	pending bool          // a refill is in flight
	done    chan struct{} // closed when it ends
	// What the store answered at the last refill, for the statuses of local decisions.
	quota, storeRem, resetAt int64
}

func (t *leaseTable) shard(key string) *leaseShard {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	return &t.shards[h%leaseShards]
}

// take debits cost from key's slice if it covers it, writing the local status into st;
// otherwise it says whether this request refills the slice, asks for its exact cost, or
// waits on the returned channel for the refill in flight (when wait is set).
func (t *leaseTable) take(key string, lim Limit, cost, now int64, st *Status, wait bool) (leaseHit, <-chan struct{}) {
	sh := t.shard(key)
	sh.mu.Lock()
	e := sh.m[key]
	if e == nil {
		if sh.m == nil {
			sh.m = make(map[string]*lease)
		}
		if len(sh.m) >= maxLeasesPerShard {
			sh.sweep(now)
			if len(sh.m) >= maxLeasesPerShard {
				sh.mu.Unlock()
				return leaseHit{state: leaseDirect}, nil
			}
		}
		e = &lease{}
		sh.m[key] = e
	}
	if e.left >= cost && now < e.exp && e.lim == lim {
		e.left -= cost
		*st = Status{Allowed: true, Limit: e.quota, Remaining: e.left + e.storeRem,
			ResetAfter: time.Duration(max(0, e.resetAt-now))}
		g := e.gen
		sh.mu.Unlock()
		return leaseHit{state: leaseCovered, gen: g}, nil
	}
	if e.pending {
		ch := e.done
		sh.mu.Unlock()
		if wait {
			return leaseHit{state: leaseWait}, ch
		}
		return leaseHit{state: leaseDirect}, nil
	}
	e.pending = true
	e.done = make(chan struct{})
	sh.mu.Unlock()
	return leaseHit{state: leaseRefill}, nil
}

// end ends e's refill. Called with the shard's lock held.
func (e *lease) finish() {
	e.pending = false
	if e.done != nil {
		close(e.done)
		e.done = nil
	}
}

// install ends a refill that the store allowed: left units (the slice less the request's
// cost) join key's slice. now is the instant read before the store call, s the store's
// status. The slice expires ttl after now, and for a fixed window no later than the window's
// end; units left from a still valid slice of the same window are kept, with the earlier
// expiry of the two.
func (t *leaseTable) install(key string, lim Limit, left, now int64, ttl time.Duration, s *Status) {
	exp, end := now+int64(ttl), int64(0)
	if lim.Algorithm == FixedWindow {
		end = now + int64(s.ResetAfter)
		exp = min(exp, end)
	}
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil {
		return // removed by Reset meanwhile
	}
	e.finish()
	if e.left > 0 && now < e.exp && e.lim == lim && (lim.Algorithm != FixedWindow || abs64(e.end-end) < int64(lim.Period)/2) {
		e.left += left
		e.exp = min(e.exp, exp)
	} else {
		e.lim, e.left, e.exp, e.end = lim, left, exp, end
		e.gen++
	}
	e.quota, e.storeRem, e.resetAt = s.Limit, s.Remaining, now+int64(s.ResetAfter)
	s.Remaining += e.left
}

// refund gives cost back to key's slice if it is still the one it was debited from.
func (t *leaseTable) refund(key string, gen uint32, cost int64) {
	sh := t.shard(key)
	sh.mu.Lock()
	if e := sh.m[key]; e != nil && e.gen == gen {
		e.left += cost
	}
	sh.mu.Unlock()
}

// release ends a refill that took nothing.
func (t *leaseTable) release(key string) {
	sh := t.shard(key)
	sh.mu.Lock()
	if e := sh.m[key]; e != nil {
		e.finish()
	}
	sh.mu.Unlock()
}

// remove forgets key's slice (Limiter.Reset).
func (t *leaseTable) remove(key string) {
	sh := t.shard(key)
	sh.mu.Lock()
	if e := sh.m[key]; e != nil {
		e.finish()
	}
	delete(sh.m, key)
	sh.mu.Unlock()
}

// sweep drops the expired slices with no refill in flight. Called with sh.mu held.
func (sh *leaseShard) sweep(now int64) {
	for k, e := range sh.m {
		if !e.pending && e.exp <= now {
			delete(sh.m, k)
		}
	}
}

func abs64(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// leaseTake decides a request whose every hit is leased (see the comment at the top of this
// file). It fills res and returns the source to count; on error it has applied the failure
// policy as take does.
func (l *Limiter) leaseTake(ctx context.Context, d *cdomain, tag string, sc *scratch, res *Result, now time.Time) (Source, error) {
	n := len(sc.hits)
	nowNs := now.UnixNano()
	sc.ls = sc.ls[:0]
	for range sc.hits {
		sc.out = append(sc.out, Status{})
	}
	all := true
	for i := range sc.hits {
		h := &sc.hits[i]
		var lh leaseHit
		// A request that makes a refill itself never waits for another one: not for its own
		// (two hits on one key), nor for a request that waits for its refill (a cycle).
		mayWait := true
		for j := range sc.ls {
			if sc.ls[j].state == leaseRefill {
				mayWait = false
			}
		}
		for wait := 0; ; wait++ {
			var ch <-chan struct{}
			lh, ch = l.leases.take(h.Key, h.Limit, h.Cost, nowNs, &sc.out[i], mayWait && wait < 1)
			if lh.state != leaseWait {
				break
			}
			select {
			case <-ch:
				now = l.now() // the slice's expiry is checked at the instant it is used
				nowNs = now.UnixNano()
			case <-ctx.Done():
				l.leaseUndo(sc)
				return 0, ctx.Err()
			}
		}
		sc.ls = append(sc.ls, lh)
		all = all && lh.state == leaseCovered
	}
	if all {
		l.fill(ctx, d, sc, res, FromLease, now, tag)
		return FromLease, nil
	}
	if l.fromCache(sc, res, tag, now) {
		l.leaseUndo(sc)
		return FromCache, nil
	}
	sc.sub, sc.subH, sc.subL = sc.sub[:0], sc.subH[:0], sc.subL[:0]
	raised := false // some hit asks for more than its cost
	for i := range sc.hits {
		if sc.ls[i].state == leaseCovered {
			continue
		}
		h := sc.hits[i]
		if sc.ls[i].state == leaseRefill {
			raised = raised || sc.lease[i].units > h.Cost
			h.Cost = max(h.Cost, sc.lease[i].units)
		}
		sc.sub = append(sc.sub, i)
		sc.subH = append(sc.subH, h)
		sc.subL = append(sc.subL, sc.lims[i])
	}
	sc.subO = append(sc.subO[:0], make([]Status, len(sc.subH))...)
	allowed, reason, err := l.leaseAsk(ctx, tag, sc, now)
	if err == nil && !allowed && raised {
		// The store refused whole slices: ask for exactly the request's costs.
		for j, i := range sc.sub {
			sc.subH[j].Cost = sc.hits[i].Cost
		}
		allowed, reason, err = l.leaseAsk(ctx, tag, sc, now)
	}
	if err != nil {
		l.leaseUndo(sc)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		sc.out = sc.out[:n]
		src, err := l.policy(ctx, d, tag, sc, reason, err)
		if err != nil {
			if src == FromFailClosed {
				failClosed(sc, res)
				d.storeUnavailable()
			}
			return src, err
		}
		l.fill(ctx, d, sc, res, src, now, tag)
		return src, nil
	}
	if !allowed {
		l.leaseUndo(sc)
	}
	for j, i := range sc.sub {
		s := &sc.subO[j]
		if allowed && sc.ls[i].state == leaseRefill {
			h := &sc.hits[i]
			l.leases.install(h.Key, h.Limit, sc.subH[j].Cost-h.Cost, nowNs, sc.lease[i].ttl, s)
		}
		sc.out[i] = *s
	}
	l.fill(ctx, d, sc, res, FromStore, now, tag)
	return FromStore, nil
}

// leaseAsk asks the store for the hits in sc.subH (through the breaker), reporting whether it
// allowed them all.
func (l *Limiter) leaseAsk(ctx context.Context, tag string, sc *scratch, now time.Time) (bool, int, error) {
	hits, out, lims := sc.hits, sc.out, sc.lims
	sc.hits, sc.out, sc.lims = sc.subH, sc.subO, sc.subL
	reason, err := l.tryStore(ctx, tag, sc, now)
	sc.subH, sc.subO, sc.subL = sc.hits, sc.out, sc.lims
	sc.hits, sc.out, sc.lims = hits, out, lims
	allowed := true
	for i := range sc.subO {
		allowed = allowed && sc.subO[i].Allowed
	}
	return allowed, reason, err
}

// leaseUndo gives back the local debits of a request that is not allowed, and ends its
// refills.
func (l *Limiter) leaseUndo(sc *scratch) {
	for i := range sc.ls {
		h := &sc.hits[i]
		switch sc.ls[i].state {
		case leaseCovered:
			l.leases.refund(h.Key, sc.ls[i].gen, h.Cost)
			sc.out[i].Remaining += h.Cost
		case leaseRefill:
			l.leases.release(h.Key)
		}
	}
}
