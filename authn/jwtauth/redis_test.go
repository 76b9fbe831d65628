package jwtauth_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/authn/jwtauth/redisrevoke"
	"github.com/wardenhq/warden/internal/redistest"
)

// Two replicas share revocations through one Redis: a token cached by both is refused by
// both once either revokes it.
func TestRevocationSharedThroughRedis(t *testing.T) {
	srv := redistest.Start(t)
	clock := newClock()
	replica := func() *jwtauth.Verifier {
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { _ = rdb.Close() })
		store := redisrevoke.New(rdb, redisrevoke.Config{Now: clock.Now})
		return newEnv(t, func(c *jwtauth.Config) {
			c.Revocations = store
			c.Now = clock.Now
		}).v
	}
	a, b := replica(), replica()
	k := fixture()
	tok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed"},
		with(claimsAt(time.Now()), "jti", "shared-1"))
	other := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed"},
		with(claimsAt(time.Now()), "jti", "shared-2"))
	clock.Set(time.Now()) // Redis expires keys on its own clock: the test clock follows it
	ctx := context.Background()
	for _, v := range []*jwtauth.Verifier{a, b, a, b} { // the second round is cached
		if _, got := v.Verify(ctx, tok); got != authn.OK {
			t.Fatalf("before revocation: got %v, want ok", got)
		}
	}
	p, _ := a.Verify(ctx, tok)
	if err := a.Revoke(ctx, p.CredentialID, p.ExpiresAt); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	for name, v := range map[string]*jwtauth.Verifier{"revoking replica": a, "other replica": b} {
		if _, got := v.Verify(ctx, tok); got != authn.Revoked {
			t.Errorf("%s: got %v, want %v", name, got, authn.Revoked)
		}
		if _, got := v.Verify(ctx, other); got != authn.OK {
			t.Errorf("%s, other jti: got %v, want ok", name, got)
		}
	}
	srv.Stop()
	if _, got := b.Verify(ctx, other); got != authn.Unavailable {
		t.Errorf("Redis down: got %v, want %v (fail closed)", got, authn.Unavailable)
	}
}
