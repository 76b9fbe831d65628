package limiter

import (
	"errors"
	"sync/atomic"
	"time"
)

// ErrTimeout is wrapped by a store's error when a request reached the backend and its answer
// did not come back before the deadline: evidence that the backend is slow or hung. A store
// returns a plain context error instead when the deadline passed before the request was sent
// (while it waited in the store's own queue for a pipeline): that is load on this process,
// not a sick backend, and it does not count against the circuit breaker.
var ErrTimeout = errors.New("limiter: store timed out with the request on the wire")

// ErrLost is wrapped by a store's error when a request was sent and the connection failed
// before its answer came back (reset, closed): the store may have counted it. Like any
// connection error it counts against the circuit breaker; the decision the failure policy
// then takes is accounted as reason "unknown", as for ErrTimeout.
var ErrLost = errors.New("limiter: store connection lost with the request on the wire")

// BreakerState is the state of the circuit breaker over the store.
type BreakerState uint8

const (
	// BreakerClosed: every call goes to the store.
	BreakerClosed BreakerState = iota
	// BreakerOpen: no call goes to the store until the cooldown ends; the failure policy
	// decides.
	BreakerOpen
	// BreakerHalfOpen: the cooldown is over and one probe, a real request, is on its way to
	// the store; the others are still decided by the failure policy.
	BreakerHalfOpen
)

var breakerStateNames = [...]string{"closed", "open", "half_open"}

func (s BreakerState) String() string {
	if int(s) < len(breakerStateNames) {
		return breakerStateNames[s]
	}
	return "unknown"
}

// outcome is how a call that the breaker let through ended.
type outcome uint8

const (
	// succeeded: the store answered.
	succeeded outcome = iota
	// failed: evidence of a sick store: a connection error, an error reply, or a timeout of a
	// request on the wire (ErrTimeout).
	failed
	// abandoned: no evidence either way: the caller went away, or the deadline passed before
	// the request left this process.
	abandoned
)

// breaker is a circuit breaker over one store backend. After threshold consecutive failures
// spread over at least span (no success in between) it opens for cooldown, during which no
// call reaches the backend; then one call goes through
// as a probe (half-open): its success closes the breaker, its failure opens it again, and a
// probe abandoned without a verdict lets the next call probe. Only failures that say the
// backend is sick count (see outcome); a burst that makes calls wait in this process never
// opens it, nor does a hiccup of this process that times out every call in flight at once
// (the span: a sick backend keeps failing, a starved process recovers).
//
// Every call that allow lets through must be ended by exactly one report with the probe flag
// allow returned, whatever happens to the call: a probe that is never reported would keep the
// breaker half-open for good.
//
// The zero value is not usable: set threshold and cooldown. One breaker guards one backend;
// the Limiter keeps one for its store, or one per backend of a Sharded store.
// Safe for concurrent use.
type breaker struct {
	threshold int64
	cooldown  time.Duration
	span      time.Duration
	// changed, if set, is called once per state change, with the new state.
	changed func(BreakerState)

	failures  atomic.Int64
	since     atomic.Int64 // unix nanoseconds of the streak's first failure
	openUntil atomic.Int64 // unix nanoseconds; 0 when closed
	probing   atomic.Bool
}

// allow reports whether a call may go to the backend now, and whether that call is the
// half-open probe.
func (b *breaker) allow(now time.Time) (ok, probe bool) {
	u := b.openUntil.Load()
	if u == 0 {
		return true, false
	}
	if now.UnixNano() < u || !b.probing.CompareAndSwap(false, true) {
		return false, false
	}
	if b.openUntil.Load() == 0 {
		// Closed meanwhile by another call's success: an ordinary call.
		b.probing.Store(false)
		return true, false
	}
	b.notify(BreakerHalfOpen)
	return true, true
}

// report ends a call that allow let through.
func (b *breaker) report(now time.Time, probe bool, o outcome) {
	switch o {
	case succeeded:
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
		if b.openUntil.Load() != 0 && b.openUntil.Swap(0) != 0 {
			b.probing.Store(false)
			b.notify(BreakerClosed)
		} else if probe {
			b.probing.Store(false)
		}
	case failed:
		until := now.Add(b.cooldown).UnixNano()
		if probe {
			// The probe failed: open again for another cooldown.
			b.openUntil.Store(until)
			b.probing.Store(false)
			b.notify(BreakerOpen)
			return
		}
		n := b.failures.Add(1)
		if n == 1 {
			b.since.Store(now.UnixNano())
		}
		if n >= b.threshold && now.UnixNano()-b.since.Load() >= int64(b.span) && b.openUntil.CompareAndSwap(0, until) {
			b.notify(BreakerOpen)
		}
	case abandoned:
		if probe {
			b.probing.Store(false)
		}
	}
}

// state is the breaker's state.
func (b *breaker) state() BreakerState {
	u := b.openUntil.Load()
	switch {
	case u == 0:
		return BreakerClosed
	case b.probing.Load():
		return BreakerHalfOpen
	}
	return BreakerOpen // the cooldown may be over: then the next call probes
}

func (b *breaker) notify(s BreakerState) {
	if b.changed != nil {
		b.changed(s)
	}
}

// latency is a moving average of how long the store takes to answer (a baseline), kept
// without locks. A timeout counts against the breaker only when the call had far longer than
// that: on a machine or a Redis that is loaded but healthy the baseline rises with the load,
// and calls with short deadlines timing out are not taken for a hung store.
type latency struct {
	avg atomic.Int64 // nanoseconds; 0 until the first answer
}

// Far above: sickFactor times the baseline, and at least minSick.
const (
	sickFactor = 4
	minSick    = 2 * time.Millisecond
)

func (l *latency) observe(d time.Duration) {
	a := l.avg.Load()
	if a == 0 {
		l.avg.Store(int64(d))
		return
	}
	l.avg.Store(a + (int64(d)-a)/16) // a lost update under contention only slows the average
}

// farAbove reports whether d is far above the baseline (always, before the first answer).
func (l *latency) farAbove(d time.Duration) bool {
	return d >= max(sickFactor*time.Duration(l.avg.Load()), minSick)
}
