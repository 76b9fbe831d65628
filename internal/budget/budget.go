// Package budget bounds the calls Warden makes to its dependencies (a Redis store, an OAuth2
// introspection endpoint) on a request path, so that every request gets a decision before its
// caller gives up on it.
//
// A Guard stands for one dependency. Its Do derives the call's budget from the caller's
// deadline minus a margin for answering, capped by the dependency's own ceiling, runs the call
// under that budget, and keeps a circuit breaker: consecutive failures (a call that did not
// finish within its budget is one) open it, an open breaker refuses calls in microseconds,
// and after a cooldown one real call is let through as a probe whose outcome closes or reopens
// it.
//
// It knows nothing of what the dependency is or of gRPC: callers turn its errors into their
// own answers (authn.Unavailable, a 503 decision).
//
//	g := budget.New(budget.Config{Name: "apikey_store", Cap: 500 * time.Millisecond})
//	err := g.Do(ctx, func(ctx context.Context) error {
//		rec, err = store.Key(ctx, id)
//		if errors.Is(err, authn.ErrKeyNotFound) {
//			return nil // an answer, not a failure
//		}
//		return err
//	})
//	if err != nil {
//		return authn.Unavailable // budget.ErrOpen, budget.ErrTimeout, or the store's error
//	}
package budget

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Errors Do returns without a dependency's answer. The dependency's own errors are returned
// as they are.
var (
	// ErrOpen: the breaker is open (or a probe is in flight); no call was made.
	ErrOpen = errors.New("dependency unavailable: circuit breaker open")
	// ErrTimeout: the call did not finish within its budget. It counts as a failure.
	ErrTimeout = errors.New("dependency call did not finish within its budget")
	// ErrNoTime: the caller's deadline leaves no budget after the answering margin; no call
	// was made and the breaker is not told (it is not the dependency's fault).
	ErrNoTime = errors.New("no time left for a dependency call")
)

// Config configures a Guard. Every field but Name has the default stated beside it.
type Config struct {
	// Name names the dependency in logs and metrics (snake_case, e.g. "webhook_replay").
	Name string
	// Cap is the ceiling of one call's budget, whatever the caller's deadline. Default 500ms.
	Cap time.Duration
	// Margin is kept back from the caller's deadline for answering, plus a fifth of the time
	// left, so that a 200 ms deadline gives a call at most 158 ms and a 20 ms one 14 ms.
	// Default 2ms.
	Margin time.Duration
	// Failures is how many consecutive failures open the breaker. Default 5.
	Failures int
	// Cooldown is how long the breaker stays open before one probe call is let through.
	// Default 500ms.
	Cooldown time.Duration
	// Logger receives state changes, once each. Default slog.Default().
	Logger *slog.Logger
	// Now is the breaker's clock (the cooldown). Budgets are always measured in real time,
	// against the caller's deadline. Default time.Now.
	Now func() time.Time
}

// State is a breaker's state.
type State uint8

const (
	// Closed: calls go through.
	Closed State = iota
	// Open: calls are refused with ErrOpen until the cooldown ends.
	Open
	// HalfOpen: one probe call is in flight; other calls are refused.
	HalfOpen
)

func (s State) String() string {
	switch s {
	case Open:
		return "open"
	case HalfOpen:
		return "half_open"
	}
	return "closed"
}

// Outcome is how one Do ended, for metrics.
type Outcome uint8

const (
	OutcomeOK      Outcome = iota // the dependency answered
	OutcomeError                  // the dependency failed
	OutcomeTimeout                // the call did not finish within its budget
	OutcomeOpen                   // refused by the open breaker
	OutcomeNoTime                 // no budget left after the margin
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "error", "timeout", "breaker_open", "no_time"}

func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "invalid"
}

// Stats is what a Guard did since it was built.
type Stats struct {
	State State
	// Outcomes counts calls of Do by outcome (index with an Outcome).
	Outcomes [numOutcomes]uint64
	// Opens counts the times the breaker opened.
	Opens uint64
}

// Guard is the budget and circuit breaker of one dependency. Build it with New; the zero value
// is not usable. Safe for concurrent use; share one Guard among all the calls to one
// dependency.
type Guard struct {
	cfg Config

	mu        sync.Mutex
	state     State
	failures  int
	openUntil time.Time

	outcomes [numOutcomes]atomic.Uint64
	opens    atomic.Uint64
}

// New applies cfg's defaults and returns a closed Guard.
func New(cfg Config) *Guard {
	if cfg.Cap <= 0 {
		cfg.Cap = 500 * time.Millisecond
	}
	if cfg.Margin <= 0 {
		cfg.Margin = 2 * time.Millisecond
	}
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.Cooldown <= 0 {
		cfg.Cooldown = 500 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Guard{cfg: cfg}
}

// Name returns the dependency's name.
func (g *Guard) Name() string { return g.cfg.Name }

// State returns the breaker's state now.
func (g *Guard) State() State {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Stats returns the counters and the state.
func (g *Guard) Stats() Stats {
	s := Stats{State: g.State(), Opens: g.opens.Load()}
	for i := range s.Outcomes {
		s.Outcomes[i] = g.outcomes[i].Load()
	}
	return s
}

// Budget returns the time a call started at now may take under ctx: the time left before
// ctx's deadline, less Margin and a fifth of that time, at most Cap (Cap when ctx has no
// deadline). It is not positive when no time is left.
func (g *Guard) Budget(ctx context.Context, now time.Time) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return g.cfg.Cap
	}
	left := dl.Sub(now)
	return min(g.cfg.Cap, left-g.cfg.Margin-left/5)
}

// Do calls fn under the dependency's budget and breaker. fn gets a context that carries the
// caller's values, not its cancellation, and ends when the budget does; fn returns nil when
// the dependency answered (a "not found" is an answer) and an error when it failed.
//
// Do returns fn's error, or ErrOpen, ErrTimeout or ErrNoTime, or ctx's error if the caller
// left first; it returns by the end of the budget even if fn does not honour its context. fn
// runs in a goroutine of its own, and its outcome reaches the breaker even when the caller
// has left, so a probe always settles the breaker.
func (g *Guard) Do(ctx context.Context, fn func(context.Context) error) error {
	b := g.Budget(ctx, time.Now())
	if b <= 0 {
		g.outcomes[OutcomeNoTime].Add(1)
		return ErrNoTime
	}
	probe, ok := g.admit(g.cfg.Now())
	if !ok {
		g.outcomes[OutcomeOpen].Add(1)
		return ErrOpen
	}
	c := &call{g: g, probe: probe, done: make(chan struct{})}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b)
	c.timer = time.AfterFunc(b, func() { c.settle(ErrTimeout) })
	go func() {
		err := fn(cctx)
		if err != nil && cctx.Err() != nil {
			err = ErrTimeout // the budget ended it
		}
		cancel()
		c.timer.Stop()
		c.settle(err)
	}()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call is one Do's call: settled once, by fn's return or by the budget's end.
type call struct {
	g       *Guard
	probe   bool
	timer   *time.Timer
	settled atomic.Bool
	err     error
	done    chan struct{}
}

func (c *call) settle(err error) {
	if !c.settled.CompareAndSwap(false, true) {
		return
	}
	c.err = err
	switch {
	case err == nil:
		c.g.outcomes[OutcomeOK].Add(1)
	case errors.Is(err, ErrTimeout):
		c.g.outcomes[OutcomeTimeout].Add(1)
	default:
		c.g.outcomes[OutcomeError].Add(1)
	}
	c.g.record(err == nil, c.probe, c.g.cfg.Now())
	close(c.done)
}

// admit reports whether a call may go out now, and whether it is the probe.
func (g *Guard) admit(now time.Time) (probe, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case Closed:
		return false, true
	case Open:
		if now.Before(g.openUntil) {
			return false, false
		}
		g.setState(HalfOpen)
		return true, true
	}
	return false, false // HalfOpen: the probe is in flight
}

// record counts one call's outcome. Only the probe moves a breaker out of HalfOpen; calls that
// were already in flight when it opened change nothing.
func (g *Guard) record(ok, probe bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case probe && ok:
		g.failures = 0
		g.setState(Closed)
	case probe:
		g.open(now)
	case g.state != Closed:
	case ok:
		g.failures = 0
	default:
		g.failures++
		if g.failures >= g.cfg.Failures {
			g.open(now)
		}
	}
}

func (g *Guard) open(now time.Time) {
	g.openUntil = now.Add(g.cfg.Cooldown)
	if g.state == Closed {
		g.opens.Add(1)
	}
	g.setState(Open)
}

// setState changes the state and logs the changes an operator acts on, once each: closed to
// open, and back to closed. The probes of an open breaker (open, half-open, open again) are
// not logged.
func (g *Guard) setState(s State) {
	prev := g.state
	g.state = s
	if (prev == Closed && s == Open) || (prev != Closed && s == Closed) {
		g.cfg.Logger.LogAttrs(context.Background(), slog.LevelWarn, "dependency circuit breaker "+s.String(),
			slog.String("dependency", g.cfg.Name))
	}
}
