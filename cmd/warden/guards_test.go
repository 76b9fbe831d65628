package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/internal/budget"
)

// hangRevocations is a revocation store whose lookups hang, ignoring their context.
type hangRevocations struct {
	*jwtauth.MemoryRevocations
	calls   atomic.Int32
	release chan struct{}
}

func (h *hangRevocations) Revoked(context.Context, string) (bool, error) {
	h.calls.Add(1)
	<-h.release
	return false, nil
}

// TestGuardedRevocations: a hanging revocation store answers with an error (the verification
// is then Unavailable, fail closed) before the caller's deadline, and the hangs open its
// breaker.
func TestGuardedRevocations(t *testing.T) {
	store := &hangRevocations{MemoryRevocations: jwtauth.NewMemoryRevocations(nil), release: make(chan struct{})}
	defer close(store.release)
	g := budget.New(budget.Config{Name: "jwt_revocations", Cap: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	r := guardedRevocations{store, g}
	for i := range 7 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		revoked, err := r.Revoked(ctx, "jti-1")
		late := ctx.Err()
		cancel()
		if err == nil || revoked || late != nil {
			t.Fatalf("lookup %d: got %v, %v (caller's context: %v); want an error before the deadline", i, revoked, err, late)
		}
	}
	if got := store.calls.Load(); got != 5 {
		t.Errorf("store calls = %d, want 5 (then the breaker opens)", got)
	}
	if st := g.State(); st != budget.Open {
		t.Errorf("breaker = %v, want open", st)
	}
}
