package service_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/service"
)

// benchUsers is how many distinct keys the benchmarks send round robin, as bench/ does.
const benchUsers = 1000

func benchLimiter(b testing.TB) *limiter.Limiter {
	b.Helper()
	rl := &limiter.RateLimit{Name: "per_user", Unit: "second", RequestsPerUnit: 1 << 30}
	lim, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), Logger: quietLogger(), Domains: []limiter.Domain{
		{Name: "bench", Descriptors: []limiter.Descriptor{{Key: "user", RateLimit: rl}}},
		{Name: "api", Descriptors: []limiter.Descriptor{{Key: "user", RateLimit: rl}}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

// BenchmarkCheckRateLimit is the handler of CheckRateLimit on the in-memory store, without
// gRPC: one descriptor, allowed.
func BenchmarkCheckRateLimit(b *testing.B) {
	s := service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Limiter: benchLimiter(b)}})
	reqs := make([]*wardenv1.CheckRateLimitRequest, benchUsers)
	for i := range reqs {
		reqs[i] = &wardenv1.CheckRateLimitRequest{Domain: "bench", Descriptors: []*wardenv1.RateLimitDescriptor{
			{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: fmt.Sprint("user-", i)}}}}}
	}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := s.CheckRateLimit(ctx, reqs[i%benchUsers])
		if err != nil || !resp.Allowed {
			b.Fatalf("got %v, %v", resp, err)
		}
		i++
	}
}

// checkServer is a Server deciding Check with an API key, a route with an owner check and a
// per-user limit on the in-memory store, and benchUsers requests (user i with key i).
func checkServer(b testing.TB) (*service.Server, []*wardenv1.CheckRequest) {
	b.Helper()
	pepper, err := authn.NewPepper([]byte("a-bench-pepper-of-at-least-32-bytes-0123"))
	if err != nil {
		b.Fatal(err)
	}
	store := &authn.MemoryKeyStore{}
	ctx := context.Background()
	reqs := make([]*wardenv1.CheckRequest, benchUsers)
	for i := range reqs {
		key, parsed, err := authn.NewAPIKey(authn.EnvLive)
		if err != nil {
			b.Fatal(err)
		}
		user := fmt.Sprint("user-", i)
		if err := store.Put(ctx, authn.KeyRecord{ID: parsed.ID, Env: authn.EnvLive, Digest: pepper.Digest(parsed.Secret),
			Owner: user, Tenant: "acme", Roles: []string{"user"}}); err != nil {
			b.Fatal(err)
		}
		reqs[i] = &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/users/" + user + "/orders",
			Headers: map[string]string{"authorization": "Bearer " + key, "user-agent": "bench"}}}
	}
	keys, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: store, Pepper: pepper, Env: authn.EnvLive, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	an, err := authn.NewAuthenticator(authn.Config{APIKeys: keys})
	if err != nil {
		b.Fatal(err)
	}
	pol, err := authz.Compile(authz.Config{
		Roles:     map[string]authz.RoleConfig{"user": {Permissions: []string{"orders:read"}}},
		Ownership: map[string]authz.OwnershipConfig{"order": {}},
		Routes: []authz.RouteConfig{{Name: "user_orders", Method: "GET", Path: "/v1/users/{user_id}/orders",
			Action: "orders:read", ResourceType: "order", OwnerParam: "user_id",
			RateLimits: []authz.RateLimitConfig{{Domain: "api", Descriptors: []authz.DescriptorConfig{{Key: "user", From: "principal.subject"}}}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	s := service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{
		Policy: pol, Limiter: benchLimiter(b), Authn: &service.Authn{Authenticator: an, APIKeys: keys}}})
	return s, reqs
}

// BenchmarkCheck is the handler of Check without gRPC: an API key (cached after the first
// round), a route with an owner check, and a per-user limit on the in-memory store.
func BenchmarkCheck(b *testing.B) {
	s, reqs := checkServer(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		resp, err := s.Check(ctx, reqs[i%benchUsers])
		if err != nil || !resp.Allowed {
			b.Fatalf("got %v, %v", resp, err)
		}
		i++
	}
}

// TestCheckAllocs guards Check's allocations per decision on the in-memory path (API key
// cached, route, owner check, one limit): five for the answer's parts, which gRPC marshals
// after the handler returns (the response, its principal, the identity headers, the
// rate-limit statuses and their headers), and one in limiter.Check (the limit's key string,
// built per decision). Authentication and the route match allocate nothing.
func TestCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	s, reqs := checkServer(t)
	ctx := context.Background()
	for _, r := range reqs { // every key verified and cached, every limit key created
		if resp, err := s.Check(ctx, r); err != nil || !resp.Allowed {
			t.Fatalf("got %v, %v", resp, err)
		}
	}
	i := 0
	got := testing.AllocsPerRun(1000, func() {
		if _, err := s.Check(ctx, reqs[i%benchUsers]); err != nil {
			t.Fatal(err)
		}
		i++
	})
	if got > 6 {
		t.Errorf("got %v allocations per Check, want at most 6", got)
	}
}
