package budget

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestBudget(t *testing.T) {
	g := New(Config{Name: "t", Cap: 500 * time.Millisecond})
	now := time.Unix(1000, 0)
	for _, tt := range []struct {
		deadline time.Duration // from now; 0: none
		want     time.Duration
	}{
		{0, 500 * time.Millisecond},
		{5 * time.Second, 500 * time.Millisecond},
		{200 * time.Millisecond, 158 * time.Millisecond},
		{20 * time.Millisecond, 14 * time.Millisecond},
		{2 * time.Millisecond, -400 * time.Microsecond},
	} {
		ctx := context.Background()
		if tt.deadline > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, now.Add(tt.deadline))
			defer cancel()
		}
		if got := g.Budget(ctx, now); got != tt.want {
			t.Errorf("Budget with deadline %v = %v, want %v", tt.deadline, got, tt.want)
		}
	}
}

// TestBreakerGrid walks the breaker through a fixed grid of instants.
func TestBreakerGrid(t *testing.T) {
	var logs bytes.Buffer
	g := New(Config{Name: "dep", Failures: 3, Cooldown: time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	step := func(ms int, wantProbe, wantOK bool, result bool) {
		t.Helper()
		probe, ok := g.admit(at(ms))
		if probe != wantProbe || ok != wantOK {
			t.Fatalf("at %d ms: admit = probe %v ok %v, want %v %v (state %v)", ms, probe, ok, wantProbe, wantOK, g.State())
		}
		if ok {
			g.record(result, probe, at(ms))
		}
	}
	step(0, false, true, false)
	step(1, false, true, true) // a success resets the count
	step(2, false, true, false)
	step(3, false, true, false)
	if g.State() != Closed {
		t.Fatalf("state after 2 failures = %v, want closed", g.State())
	}
	step(4, false, true, false) // third consecutive failure: open
	if g.State() != Open {
		t.Fatalf("state = %v, want open", g.State())
	}
	step(500, false, false, false) // cooling down
	// The probe at 1004 ms fails: open for another second, not logged again.
	probe, ok := g.admit(at(1004))
	if !probe || !ok {
		t.Fatalf("at 1004 ms: admit = %v %v, want the probe", probe, ok)
	}
	if _, ok := g.admit(at(1005)); ok || g.State() != HalfOpen {
		t.Fatalf("a second call while the probe is in flight was admitted (state %v)", g.State())
	}
	g.record(false, true, at(1100))
	step(2000, false, false, false)
	step(2100, true, true, true) // the probe succeeds: closed
	if g.State() != Closed {
		t.Fatalf("state after a good probe = %v, want closed", g.State())
	}
	step(2101, false, true, true)
	if got := strings.Count(logs.String(), "circuit breaker open"); got != 1 {
		t.Errorf("logged %d opens, want 1:\n%s", got, logs.String())
	}
	if got := strings.Count(logs.String(), "circuit breaker closed"); got != 1 {
		t.Errorf("logged %d closes, want 1:\n%s", got, logs.String())
	}
	if got := g.Stats().Opens; got != 1 {
		t.Errorf("Opens = %d, want 1", got)
	}
}

// TestDoHang: a call that hangs past its budget returns ErrTimeout at the budget's end, even
// when fn ignores its context, and counts as a failure; after Failures of them the breaker
// refuses calls without calling.
func TestDoHang(t *testing.T) {
	g := New(Config{Name: "hang", Failures: 2, Cooldown: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	release := make(chan struct{})
	defer close(release)
	var calls atomic.Int32
	hang := func(context.Context) error { calls.Add(1); <-release; return nil }
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		err := g.Do(ctx, hang)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("call %d: err = %v, want ErrTimeout", i, err)
		}
		if took > 95*time.Millisecond {
			t.Errorf("call %d returned after %v, past its 100 ms deadline's budget", i, took)
		}
	}
	if g.State() != Open {
		t.Fatalf("state = %v, want open", g.State())
	}
	start := time.Now()
	if err := g.Do(context.Background(), hang); !errors.Is(err, ErrOpen) {
		t.Fatalf("err = %v, want ErrOpen", err)
	}
	if took := time.Since(start); took > 10*time.Millisecond {
		t.Errorf("an open breaker took %v", took)
	}
	if calls.Load() != 2 {
		t.Errorf("calls = %d, want 2", calls.Load())
	}
	s := g.Stats()
	if s.Outcomes[OutcomeTimeout] != 2 || s.Outcomes[OutcomeOpen] != 1 {
		t.Errorf("outcomes = %v", s.Outcomes)
	}
}

// TestProbeAbandoned: a probe whose caller leaves still settles the breaker. It runs in a
// synctest bubble: the cooldown passes on the fake clock and synctest.Wait stands for polling
// the breaker's state.
func TestProbeAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(Config{Name: "p", Failures: 1, Cooldown: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		_ = g.Do(context.Background(), func(context.Context) error { return errors.New("down") })
		if g.State() != Open {
			t.Fatalf("state = %v, want open", g.State())
		}
		time.Sleep(5 * time.Millisecond)
		proceed := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- g.Do(ctx, func(context.Context) error { <-proceed; return nil })
		}()
		synctest.Wait()
		if g.State() != HalfOpen {
			t.Fatalf("state with the probe running = %v, want half-open", g.State())
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned probe: err = %v, want context.Canceled", err)
		}
		close(proceed)
		synctest.Wait()
		if g.State() != Closed {
			t.Fatalf("the abandoned probe's success never closed the breaker (state %v)", g.State())
		}
	})
}

func TestDoNoTime(t *testing.T) {
	g := New(Config{Name: "n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	called := false
	if err := g.Do(ctx, func(context.Context) error { called = true; return nil }); !errors.Is(err, ErrNoTime) || called {
		t.Fatalf("err = %v, called %v; want ErrNoTime and no call", err, called)
	}
	if g.State() != Closed {
		t.Errorf("state = %v, want closed: the caller's deadline is not the dependency's fault", g.State())
	}
}

func TestDoPassesAnswerAndValues(t *testing.T) {
	g := New(Config{Name: "v"})
	type key struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	defer cancel()
	boom := errors.New("boom")
	err := g.Do(ctx, func(ctx context.Context) error {
		if ctx.Value(key{}) != "v" {
			t.Error("fn's context lost the caller's values")
		}
		if _, ok := ctx.Deadline(); !ok {
			t.Error("fn's context has no deadline")
		}
		return boom
	})
	if err != boom {
		t.Fatalf("err = %v, want fn's error", err)
	}
}

func BenchmarkDo(b *testing.B) {
	g := New(Config{Name: "b"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = g.Do(ctx, func(context.Context) error { return nil })
	}
}

// BenchmarkDoOpen is what a call costs while its dependency's breaker is open.
func BenchmarkDoOpen(b *testing.B) {
	g := New(Config{Name: "b", Failures: 1, Cooldown: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	_ = g.Do(context.Background(), func(context.Context) error { return errors.New("down") })
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := g.Do(ctx, fn); err != ErrOpen {
			b.Fatal(err)
		}
	}
}
