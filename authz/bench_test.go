package authz_test

import (
	"testing"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
)

var (
	benchAlice   = authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"viewer", "customer"}, Scopes: []string{"orders:read", "orders:write"}, Method: authn.MethodAPIKey}
	benchSupport = authn.Principal{Subject: "sam", Tenant: "warden", Roles: []string{"support"}, Method: authn.MethodJWT}
	benchOrder   = authz.Resource{Type: "orders", ID: "o-1", Owner: "alice", Tenant: "acme"}
	benchRefund  = authn.Principal{Subject: "rita", Tenant: "acme", Roles: []string{"refunder"}}
	benchPaid    = authz.Resource{Type: "orders", ID: "o-9", Owner: "rita", Tenant: "acme", Attributes: map[string]string{"status": "paid"}}
	benchScoped  = authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Scopes: []string{"openid", "orders", "read"}, Method: authn.MethodJWT}
	benchNeed    = authz.ScopeRequirement{AllOf: []string{"read"}, AnyOf: []string{"admin", "orders"}}
)

// The hot paths must not allocate: Authorize without CEL, Match and Check on plain paths.
func TestZeroAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	pol := mustCompile(t, routeConfig())
	prefixes, scoped := mustCompile(t, prefixRoutes()), mustCompile(t, scopeRoutes())
	var ps authz.Params
	for _, tt := range []struct {
		name string
		f    func()
	}{
		{"Authorize owner", func() { pol.Authorize(benchAlice, "orders:read", benchOrder) }},
		{"Authorize override", func() { pol.Authorize(benchSupport, "orders:read", benchOrder) }},
		{"Authorize denied", func() { pol.Authorize(benchSupport, "orders:write", benchOrder) }},
		{"Match", func() { pol.Match("GET", "/v1/tenants/acme/users/alice/orders/o-1?x=1", &ps) }},
		{"Match malformed", func() { pol.Match("GET", "/v1/users/alice/%2e%2e/bob/orders", &ps) }},
		{"Check", func() { pol.Check(benchAlice, "GET", "/v1/tenants/acme/users/alice/orders/o-1", &ps) }},
		{"Match HEAD follows GET", func() { pol.Match("HEAD", "/v1/users/alice/orders/o-1", &ps) }},
		{"Match prefix", func() { prefixes.Match("GET", "/api/v1/users/alice/extra", &ps) }},
		{"Check plain scopes", func() { scoped.Check(benchScoped, "GET", "/v1/users/alice/orders", &ps) }},
		{"AuthorizeScopes", func() { pol.AuthorizeScopes(benchScoped, benchNeed, "orders:read", benchOrder) }},
	} {
		if got := testing.AllocsPerRun(100, tt.f); got != 0 {
			t.Errorf("%s: %v allocs/op, want 0", tt.name, got)
		}
	}
}

func BenchmarkAuthorize(b *testing.B) {
	pol := mustCompile(b, routeConfig())
	for _, bb := range []struct {
		name   string
		p      authn.Principal
		action string
		res    authz.Resource
		want   authz.Reason
	}{
		{"owner", benchAlice, "orders:read", benchOrder, authz.OK},
		{"override", benchSupport, "orders:read", benchOrder, authz.OK},
		{"not_owner", benchSupport, "orders:write", benchOrder, authz.MissingRole},
		{"cel_condition", benchRefund, "orders:refund", benchPaid, authz.OK},
		{"cel_rule", authn.Principal{Subject: "alice", Roles: []string{"customer"}}, "docs:read", authz.Resource{Owner: "alice"}, authz.OK},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			if got := pol.Authorize(bb.p, bb.action, bb.res); got.Reason != bb.want {
				b.Fatalf("Authorize = %v, want %v", got, bb.want)
			}
			for b.Loop() {
				pol.Authorize(bb.p, bb.action, bb.res)
			}
		})
	}
}

func BenchmarkAuthorizeParallel(b *testing.B) {
	pol := mustCompile(b, routeConfig())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pol.Authorize(benchAlice, "orders:read", benchOrder)
		}
	})
}

func BenchmarkMatch(b *testing.B) {
	pol := mustCompile(b, routeConfig())
	prefixes := mustCompile(b, prefixRoutes())
	for _, bb := range []struct {
		name         string
		pol          *authz.Policy
		method, path string
	}{
		{"literal", pol, "GET", "/v1/users/me/orders"},
		{"params", pol, "GET", "/v1/tenants/acme/users/alice/orders/o-1"},
		{"backtrack", pol, "GET", "/v1/users/me/orders/o-1"},
		{"encoded", pol, "GET", "/v1/users/al%69ce/orders/o-1"},
		{"head_follows_get", pol, "HEAD", "/v1/users/me/orders/o-1"},
		{"prefix", prefixes, "GET", "/api/v1/users/alice/extra"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			var ps authz.Params
			if _, r := bb.pol.Match(bb.method, bb.path, &ps); r != authz.OK {
				b.Fatalf("Match = %v", r)
			}
			for b.Loop() {
				bb.pol.Match(bb.method, bb.path, &ps)
			}
		})
	}
}

func BenchmarkCheck(b *testing.B) {
	pol := mustCompile(b, routeConfig())
	b.ReportAllocs()
	var ps authz.Params
	if d := pol.Check(benchAlice, "GET", "/v1/users/alice/orders/o-1", &ps); !d.Allowed {
		b.Fatalf("Check = %v", d)
	}
	for b.Loop() {
		pol.Check(benchAlice, "GET", "/v1/users/alice/orders/o-1", &ps)
	}
}
