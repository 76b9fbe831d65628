package main

import (
	"context"
	"time"

	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/internal/budget"
)

// redisGuard returns the budget and breaker of one Redis dependency of the config being built
// (nil without Redis: the in-process stores need none), capped at timeout (default 500ms).
// A reload builds new guards, so it also closes their breakers.
func (a *app) redisGuard(name string, timeout time.Duration) *budget.Guard {
	if a.redis == nil {
		return nil
	}
	g := budget.New(budget.Config{Name: name, Cap: timeout, Logger: a.log})
	a.next.guards = append(a.next.guards, g)
	return g
}

// guardRevocations puts the JWT revocation store under a guard when it is on Redis.
func (a *app) guardRevocations(timeout time.Duration) jwtauth.RevocationStore {
	g := a.redisGuard("jwt_revocations", timeout)
	if g == nil {
		return a.stores.jwtRevocations
	}
	return guardedRevocations{a.stores.jwtRevocations, g}
}

// guardedRevocations bounds the request path's revocation lookups (Revoked) by the guard;
// Revoke (AdminService) goes straight to the store.
type guardedRevocations struct {
	jwtauth.RevocationStore
	g *budget.Guard
}

func (r guardedRevocations) Revoked(ctx context.Context, jti string) (bool, error) {
	var revoked bool
	if err := r.g.Do(ctx, func(ctx context.Context) error {
		var err error
		revoked, err = r.RevocationStore.Revoked(ctx, jti)
		return err
	}); err != nil {
		return false, err // revoked may still be written by an abandoned call
	}
	return revoked, nil
}
