package limiter

import (
	"sync/atomic"
	"time"
)

// breaker is a circuit breaker over the store: after threshold consecutive failures it opens
// for cooldown, during which no call reaches the store; then one probe goes through
// (half-open), and its success closes the breaker while its failure opens it again.
type breaker struct {
	threshold int64
	cooldown  time.Duration

	failures  atomic.Int64
	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
	probing   atomic.Bool
}

// allow reports whether a call may go to the store now.
func (b *breaker) allow(now time.Time) bool {
	u := b.openUntil.Load()
	if u == 0 {
		return true
	}
	if now.UnixNano() < u {
		return false
	}
	return b.probing.CompareAndSwap(false, true)
}

// success records a successful call and reports whether it closed an open breaker.
func (b *breaker) success() bool {
	if b.failures.Load() != 0 {
		b.failures.Store(0)
	}
	if b.openUntil.Load() == 0 {
		return false
	}
	closed := b.openUntil.Swap(0) != 0
	b.probing.Store(false)
	return closed
}

// failure records a failed call and reports whether it opened the breaker.
func (b *breaker) failure(now time.Time) bool {
	until := now.Add(b.cooldown).UnixNano()
	if b.probing.Load() {
		// The half-open probe failed: open again.
		b.openUntil.Store(until)
		b.probing.Store(false)
		return false
	}
	if b.failures.Add(1) >= b.threshold {
		return b.openUntil.CompareAndSwap(0, until)
	}
	return false
}
