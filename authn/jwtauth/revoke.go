package jwtauth

import (
	"context"
	"sync"
	"time"
)

// RevocationStore records revoked token ids (jti) until the tokens expire. The Verifier calls
// Revoked on every verification of a token that has a jti, cache hits included, so it is on
// the hot path: it must be fast, must honour ctx's deadline, and must be safe for concurrent
// use. An error makes the verification answer authn.Unavailable (fail closed).
//
// A jti is an opaque string; implementations compare it exactly. Issuers are expected to use
// globally unique ids (UUIDs), so a jti is not qualified by its issuer.
type RevocationStore interface {
	// Revoke records jti as revoked until exp, the token's expiry. Revoking an id that
	// is already revoked, or with an exp in the past, succeeds.
	Revoke(ctx context.Context, jti string, exp time.Time) error
	// Revoked reports whether jti is revoked now.
	Revoked(ctx context.Context, jti string) (bool, error)
}

// MemoryRevocations is a RevocationStore for one process: a map from jti to expiry under a
// mutex. Expired entries are swept on Revoke. Create it with NewMemoryRevocations; it is safe
// for concurrent use. Revocations are not shared between replicas: use
// jwtauth/redisrevoke for that.
type MemoryRevocations struct {
	now func() time.Time

	mu        sync.RWMutex
	m         map[string]time.Time
	nextSweep time.Time
}

// NewMemoryRevocations returns an empty store that reads time from now (time.Now if nil).
func NewMemoryRevocations(now func() time.Time) *MemoryRevocations {
	if now == nil {
		now = time.Now
	}
	return &MemoryRevocations{now: now, m: make(map[string]time.Time)}
}

// Revoke implements RevocationStore.
func (r *MemoryRevocations) Revoke(_ context.Context, jti string, exp time.Time) error {
	now := r.now()
	if !exp.After(now) {
		return nil // the token is dead already
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.After(r.nextSweep) {
		for k, e := range r.m {
			if !e.After(now) {
				delete(r.m, k)
			}
		}
		r.nextSweep = now.Add(time.Minute)
	}
	if old, ok := r.m[jti]; !ok || exp.After(old) {
		r.m[jti] = exp
	}
	return nil
}

// Revoked implements RevocationStore. It does not allocate.
func (r *MemoryRevocations) Revoked(_ context.Context, jti string) (bool, error) {
	r.mu.RLock()
	exp, ok := r.m[jti]
	r.mu.RUnlock()
	return ok && exp.After(r.now()), nil
}
