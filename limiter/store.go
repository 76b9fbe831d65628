// Package limiter holds Warden's rate-limit model: limits and their algorithms (token bucket
// in GCRA form, sliding window, fixed window, sliding log), the descriptor configuration that
// picks which limits apply to a request, the Store contract that counts, and the failure policy
// used when a store cannot answer.
//
// The service builds one Limiter with New(Config{Store: ..., Domains: ...}) and calls
// Limiter.Check per request; see the example.
//
// It knows nothing of gRPC, protobuf, Envoy or Redis: it takes plain Go values and returns
// plain Go values. Stores live in limiter/memstore (in process) and limiter/redisstore.
package limiter

import (
	"context"
	"time"
)

// Algorithm is how a limit counts.
type Algorithm uint8

const (
	// TokenBucket is a bucket of Burst tokens refilled at Limit per Period, kept in GCRA form:
	// one theoretical arrival time per key. Exact: at most Burst + Limit*d/Period in any span
	// d, so with the default Burst (= Limit) up to 2*Limit-1 in one Period.
	TokenBucket Algorithm = iota
	// SlidingWindow estimates a window sliding over time from SlidingBuckets sub-windows, the
	// oldest weighted by how much of it still overlaps but discounted by at most
	// Limit/SlidingBuckets: never more than Limit + floor(Limit/SlidingBuckets) in any interval
	// of one Period (see algo.go).
	SlidingWindow
	// FixedWindow counts in windows aligned to multiples of Period since the Unix epoch, as
	// envoyproxy/ratelimit does: up to 2*Limit across a window edge.
	FixedWindow
	// SlidingLog keeps one timestamp per admitted unit: exact (at most Limit in any interval
	// of one Period), for small limits only.
	SlidingLog
)

var algorithmNames = [...]string{"token_bucket", "sliding_window", "fixed_window", "sliding_log"}

func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return "unknown"
}

// Limit is one rule: at most Limit units per Period. It is a plain value, comparable, and
// safe to copy.
type Limit struct {
	// Name identifies the limit in responses, headers and metrics (e.g. "burst", "per_tenant").
	Name      string
	Algorithm Algorithm
	// Limit is the number of units allowed per Period (for TokenBucket, the refill rate).
	Limit int64
	// Period is the window length (any positive duration, not only a second/minute/hour).
	Period time.Duration
	// Burst is the bucket size for TokenBucket; 0 means Limit. Ignored by the others.
	Burst int64
}

// Hit asks a Store to count Cost units of one Limit against one counter key.
type Hit struct {
	// Key names the counter. Keys are opaque to the store, which may prefix them.
	Key   string
	Limit Limit
	// Cost is the number of units to consume. 0 peeks: the status is computed, nothing is
	// consumed, and the hit is allowed if the counter is not over its limit.
	Cost int64
}

// Status is one limit's answer for one Take.
type Status struct {
	// Allowed is false when this limit alone would refuse the request's cost.
	Allowed bool
	// Limit is the limit's quota per period (for TokenBucket, its burst).
	Limit int64
	// Remaining is how many units are left after this request (never negative).
	Remaining int64
	// ResetAfter is how long until the counter is back to its full quota.
	ResetAfter time.Duration
	// RetryAfter is how long until a retry of the same cost could be allowed; zero when
	// Allowed.
	RetryAfter time.Duration
}

// Store counts hits. It is the contract that limiter/memstore and limiter/redisstore
// implement and that limiter/limitertest checks.
//
// Take checks every hit and, only if all of them are allowed, consumes each hit's cost; if any
// hit is refused nothing is consumed (all or nothing, atomically with respect to concurrent
// Takes, including Takes from other processes sharing the same backing store). It writes one
// Status per hit into out, which must have len(out) == len(hits), and reports whether the
// request as a whole was allowed.
//
// Hits are applied in order, each against the state the previous ones left (two hits on one
// key see each other). When the Take is refused, the Status of each hit that its limit alone
// allowed is that of a peek (Cost 0: nothing consumed), and a refused hit's Status is its
// refusal. The algorithms, their stored state and units are in algo.go (Params.Eval, Commit,
// Expiry); every store computes exactly what they compute.
//
// tag groups the keys of one call: a store that shards keys (Redis Cluster) must place every
// key of one Take in the same shard, and derives that placement from tag alone. Callers pass
// the same tag for every Take that touches a given key.
//
// Take is called on the request path: it must be safe for concurrent use, must not retain
// hits or out after it returns, should not allocate on the common path, and must honour ctx
// (returning ctx.Err() or a wrapped error when ctx ends first). An error means the store could
// not decide; out is then undefined.
type Store interface {
	Take(ctx context.Context, tag string, hits []Hit, out []Status) (allowed bool, err error)
}

// DeadlineTaker is implemented by stores that take a call's deadline as a value. The Limiter
// then calls TakeBy with the store deadline it computed (from the caller's deadline and
// StoreTimeout) instead of deriving a context with that deadline for every decision (a timer
// and a cancel per decision). TakeBy is Take with one more rule: it returns by deadline (an
// error wrapping ErrTimeout and context.DeadlineExceeded when its command was sent, else
// context.DeadlineExceeded), and still when ctx ends first.
type DeadlineTaker interface {
	TakeBy(ctx context.Context, deadline time.Time, tag string, hits []Hit, out []Status) (allowed bool, err error)
}

// Resetter is implemented by stores that can forget a counter, for the admin reset call. A
// reset counter is at its full quota on the next Take. Reading a counter needs no extra
// method: a Take with Cost 0 peeks.
type Resetter interface {
	Reset(ctx context.Context, tag, key string) error
}

// Sharded is implemented by stores that spread tags over several backends (the masters of a
// Redis Cluster). The Limiter keeps one circuit breaker per backend, so that a dead backend
// fails only the tags it owns while the others keep counting.
type Sharded interface {
	// Shard returns the backend that owns tag's keys now, as a small non-negative number
	// that names the backend, not the tag: when a backend fails over, its tags move to the
	// number of the promoted one, whose breaker has its own history. Called on the request
	// path: it must be cheap, safe for concurrent use, and must not block.
	Shard(tag string) int
}
