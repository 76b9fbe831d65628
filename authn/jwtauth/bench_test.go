package jwtauth_test

import (
	"context"
	"testing"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
)

func BenchmarkVerify(b *testing.B) {
	k := fixture()
	for _, tc := range eachAlgorithm(k) {
		claims := with(claimsAt(t0), "scope", "orders:read orders:write", "tenant", "t-1")
		tok := sign(b, tc.alg, tc.key, map[string]any{"alg": tc.alg, "kid": tc.kid, "typ": "at+jwt"}, claims)
		for _, mode := range []struct {
			name  string
			cache int
		}{{"uncached", -1}, {"cached", 0}} {
			e := newEnv(b, func(c *jwtauth.Config) {
				c.CacheSize = mode.cache
				c.Issuers[0].Claims.Tenant = "tenant"
			})
			b.Run(tc.alg+"/"+mode.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, r := e.v.Verify(context.Background(), tok); r != authn.OK {
						b.Fatalf("Verify: %v", r)
					}
				}
			})
		}
	}
}

func BenchmarkVerifyCachedParallel(b *testing.B) {
	e := newEnv(b, nil)
	tok := sign(b, "RS256", e.keys.rsa, map[string]any{"alg": "RS256", "kid": "rsa"}, claimsAt(t0))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r := e.v.Verify(context.Background(), tok); r != authn.OK {
				b.Errorf("Verify: %v", r)
				return
			}
		}
	})
}
