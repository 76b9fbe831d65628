package webhook

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// ReplayStore remembers which events have been delivered.
//
// Seen records (source, eventID) for ttl and reports whether this call recorded it first.
// Exactly one of any number of concurrent calls for the same pair, across every replica
// sharing the store, answers first=true while the record lives. It is called only for
// deliveries whose signature verified, once per delivery, on the request path: it must
// honour ctx's deadline and must not block otherwise. An error means the store could not
// decide; the Verifier then refuses the delivery (Reason Unavailable). Implementations are
// safe for concurrent use. ttl is positive (at least a millisecond).
//
// Implementations: MemoryReplay (one replica), authn/webhook/redisreplay (shared);
// authn/webhook/replaytest is the conformance suite both pass.
type ReplayStore interface {
	Seen(ctx context.Context, source, eventID string, ttl time.Duration) (first bool, err error)
}

// ErrReplayFull is returned by MemoryReplay.Seen when it holds MaxEntries unexpired events.
var ErrReplayFull = errors.New("webhook: replay store full")

// DefaultMaxReplayEntries is MemoryReplayConfig.MaxEntries' default.
const DefaultMaxReplayEntries = 100_000

// MemoryReplayConfig configures a MemoryReplay.
type MemoryReplayConfig struct {
	// MaxEntries bounds the number of remembered events. When it is reached and no record
	// has expired, Seen fails with ErrReplayFull rather than forget an event early (which
	// would let it be replayed): deliveries are refused until records expire. Default
	// DefaultMaxReplayEntries.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

const replayShards = 16

// MemoryReplay is an in-process ReplayStore for a single replica: a fixed number of shards,
// each a map under a mutex, with expired records removed when a shard is full. Build it with
// NewMemoryReplay; the zero value is not usable. Safe for concurrent use.
type MemoryReplay struct {
	seed     maphash.Seed
	now      func() time.Time
	perShard int
	shards   [replayShards]replayShard
}

type replayKey struct{ source, id string }

type replayShard struct {
	mu     sync.Mutex
	m      map[replayKey]int64 // expiry, Unix nanoseconds
	minExp int64               // earliest expiry in m: nothing to sweep before it
}

// NewMemoryReplay returns an empty MemoryReplay.
func NewMemoryReplay(cfg MemoryReplayConfig) *MemoryReplay {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxReplayEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &MemoryReplay{seed: maphash.MakeSeed(), now: cfg.Now, perShard: max(1, cfg.MaxEntries/replayShards)}
	for i := range r.shards {
		r.shards[i].m = make(map[replayKey]int64)
		r.shards[i].minExp = math.MaxInt64
	}
	return r
}

// Seen implements ReplayStore.
func (r *MemoryReplay) Seen(ctx context.Context, source, eventID string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("webhook: replay ttl %v is not positive", ttl)
	}
	var h maphash.Hash
	h.SetSeed(r.seed)
	h.WriteString(source)
	h.WriteByte(0)
	h.WriteString(eventID)
	sh := &r.shards[h.Sum64()%replayShards]
	k := replayKey{source, eventID}
	now := r.now().UnixNano()

	sh.mu.Lock()
	defer sh.mu.Unlock()
	exp, ok := sh.m[k]
	if ok && exp > now {
		return false, nil
	}
	if !ok && len(sh.m) >= r.perShard {
		sh.sweep(now)
		if len(sh.m) >= r.perShard {
			return false, ErrReplayFull
		}
	}
	exp = now + int64(ttl)
	if exp < now { // overflow: an absurd ttl means "forever"
		exp = math.MaxInt64
	}
	sh.m[k] = exp
	sh.minExp = min(sh.minExp, exp)
	return true, nil
}

// sweep deletes expired records, when there can be any.
func (sh *replayShard) sweep(now int64) {
	if now < sh.minExp {
		return
	}
	sh.minExp = math.MaxInt64
	for k, exp := range sh.m {
		if exp <= now {
			delete(sh.m, k)
		} else {
			sh.minExp = min(sh.minExp, exp)
		}
	}
}
