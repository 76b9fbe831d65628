package authz_test

import (
	"strings"
	"testing"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
)

func TestScopeRequirement(t *testing.T) {
	tests := []struct {
		name string
		need authz.ScopeRequirement
		have []string
		want bool
	}{
		{"nothing required", authz.ScopeRequirement{}, nil, true},
		{"any of: one held", authz.ScopeRequirement{AnyOf: []string{"admin", "read"}}, []string{"read", "write"}, true},
		{"any of: none held", authz.ScopeRequirement{AnyOf: []string{"admin", "read"}}, []string{"write"}, false},
		{"case-sensitive", authz.ScopeRequirement{AnyOf: []string{"read"}}, []string{"Read", "READ"}, false},
		{"exact, not a prefix", authz.ScopeRequirement{AnyOf: []string{"read"}}, []string{"rea", "reads", "read:all"}, false},
		{"an unsplit list is one scope", authz.ScopeRequirement{AnyOf: []string{"read"}}, []string{"read write"}, false},
		{"no wildcard meaning", authz.ScopeRequirement{AnyOf: []string{"orders:read"}}, []string{"*", "orders:*"}, false},
		{"all of: all held", authz.ScopeRequirement{AllOf: []string{"read", "write"}}, []string{"write", "openid", "read"}, true},
		{"all of: one missing", authz.ScopeRequirement{AllOf: []string{"read", "write"}}, []string{"read"}, false},
		{"both", authz.ScopeRequirement{AllOf: []string{"read"}, AnyOf: []string{"eu", "us"}}, []string{"read", "us"}, true},
		{"both: any missing", authz.ScopeRequirement{AllOf: []string{"read"}, AnyOf: []string{"eu", "us"}}, []string{"read"}, false},
		{"nil scopes hold none", authz.ScopeRequirement{AllOf: []string{"read"}}, nil, false},
		{"empty scopes hold none", authz.ScopeRequirement{AnyOf: []string{"read"}}, []string{}, false},
	}
	for _, tt := range tests {
		if got := tt.need.SatisfiedBy(tt.have); got != tt.want {
			t.Errorf("%s: %+v.SatisfiedBy(%q) = %v, want %v", tt.name, tt.need, tt.have, got, tt.want)
		}
	}
}

func TestValidScope(t *testing.T) {
	for _, s := range []string{"read", "orders:read", "https://api.example.com/read", "!#[]~", strings.Repeat("a", 256)} {
		if !authz.ValidScope(s) {
			t.Errorf("ValidScope(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"", "read write", "a\u00a0b", `a"b`, `a\b`, "a\tb", "é", strings.Repeat("a", 257)} {
		if authz.ValidScope(s) {
			t.Errorf("ValidScope(%q) = true, want false", s)
		}
	}
}

func TestAuthorizeScopes(t *testing.T) {
	pol := mustCompile(t, testConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Scopes: []string{"read", "write"}, Method: authn.MethodJWT}
	noRoles := authn.Principal{Subject: "svc", Scopes: []string{"read", "write"}, Method: authn.MethodJWT}
	order := authz.Resource{Type: "orders", ID: "o-1", Owner: "alice", Tenant: "acme"}
	read := authz.ScopeRequirement{AnyOf: []string{"read"}}
	tests := []struct {
		name   string
		p      authn.Principal
		need   authz.ScopeRequirement
		action string
		res    authz.Resource
		want   authz.Reason
	}{
		{"scopes alone", noRoles, read, "", authz.Resource{}, authz.OK},
		{"scopes alone, case-sensitive", noRoles, authz.ScopeRequirement{AnyOf: []string{"Read"}}, "", authz.Resource{}, authz.MissingScope},
		{"scopes alone, all of", noRoles, authz.ScopeRequirement{AllOf: []string{"read", "admin"}}, "", authz.Resource{}, authz.MissingScope},
		{"no credentials", authn.Principal{}, read, "", authz.Resource{}, authz.NoCredentials},
		{"scopes then roles", alice, read, "orders:write", order, authz.OK},
		{"scopes do not grant roles", noRoles, read, "orders:read", order, authz.MissingRole},
		{"scope missing before roles", alice, authz.ScopeRequirement{AnyOf: []string{"admin"}}, "orders:read", order, authz.MissingScope},
		{"ownership still applies", alice, read, "orders:read", authz.Resource{Type: "orders", Owner: "bob", Tenant: "acme"}, authz.NotOwner},
		{"invalid requirement", alice, authz.ScopeRequirement{AnyOf: []string{"read write"}}, "", authz.Resource{}, authz.MalformedRequest},
	}
	for _, tt := range tests {
		got := pol.AuthorizeScopes(tt.p, tt.need, tt.action, tt.res)
		if want := (authz.Decision{Allowed: tt.want == authz.OK, Reason: tt.want}); got != want {
			t.Errorf("%s: got %v, want %v", tt.name, got, want)
		}
	}
}

func scopeRoutes() authz.Config {
	cfg := testConfig()
	cfg.Routes = []authz.RouteConfig{
		{Name: "read_docs", Method: "GET", Path: "/docs/{id}", Scopes: authz.ScopeRequirement{AnyOf: []string{"read"}}},
		{Name: "write_docs", Method: "POST", Prefix: "/docs/", Scopes: authz.ScopeRequirement{AllOf: []string{"read", "write"}}},
		{Name: "reports", Method: "GET", Path: "/reports", Scopes: authz.ScopeRequirement{AnyOf: []string{"admin", "reports"}}, AllowedMethods: []string{"jwt"}},
		{Name: "orders", Method: "GET", Path: "/v1/users/{user_id}/orders", Action: "orders:list", OwnerParam: "user_id", Scopes: authz.ScopeRequirement{AnyOf: []string{"orders"}}},
	}
	return cfg
}

// Plain scopes on routes: exact, case-sensitive, independent of roles.
func TestCheckPlainScopes(t *testing.T) {
	pol := mustCompile(t, scopeRoutes())
	svc := func(scopes ...string) authn.Principal {
		return authn.Principal{Subject: "svc", Scopes: scopes, Method: authn.MethodJWT}
	}
	alice := func(scopes ...string) authn.Principal {
		return authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Scopes: scopes, Method: authn.MethodJWT}
	}
	tests := []checkCase{
		{"read write on a read route", svc("read", "write"), "GET", "/docs/1", authz.OK},
		{"Read is not read", svc("Read"), "GET", "/docs/1", authz.MissingScope},
		{"no scopes", authn.Principal{Subject: "svc", Method: authn.MethodJWT}, "GET", "/docs/1", authz.MissingScope},
		{"empty scopes", svc(), "GET", "/docs/1", authz.MissingScope},
		{"all of, held", svc("write", "read"), "POST", "/docs/1/comments", authz.OK},
		{"all of, one missing", svc("write"), "POST", "/docs/1", authz.MissingScope},
		{"any of", svc("reports"), "GET", "/reports", authz.OK},
		{"any of, none", svc("read"), "GET", "/reports", authz.MissingScope},
		{"credential kind first", authn.Principal{Subject: "k", Scopes: []string{"admin"}, Method: authn.MethodAPIKey}, "GET", "/reports", authz.CredentialNotAllowed},
		{"no credentials", authn.Principal{}, "GET", "/docs/1", authz.NoCredentials},
		{"with an action: scope and role", alice("orders"), "GET", "/v1/users/alice/orders", authz.OK},
		{"with an action: plain scopes do not narrow the role", alice("orders", "openid"), "GET", "/v1/users/alice/orders", authz.OK},
		{"with an action: permission scopes still narrow", alice("orders", "orders:read"), "GET", "/v1/users/alice/orders", authz.MissingScope},
		{"with an action: scope missing", alice("read"), "GET", "/v1/users/alice/orders", authz.MissingScope},
		{"with an action: ownership", alice("orders"), "GET", "/v1/users/bob/orders", authz.NotOwner},
		{"with an action: no role", svc("orders"), "GET", "/v1/users/svc/orders", authz.MissingRole},
	}
	runChecks(t, pol, tests)
}

func prefixRoutes() authz.Config {
	cfg := testConfig()
	pub := func(name, method, path, prefix string) authz.RouteConfig {
		return authz.RouteConfig{Name: name, Method: method, Path: path, Prefix: prefix, Public: true}
	}
	cfg.Routes = []authz.RouteConfig{
		pub("api", "GET", "", "/api/"),
		pub("api_v1", "GET", "", "/api/v1"),
		pub("user", "GET", "/api/v1/users/{id}", ""),
		pub("static", "GET", "/api/v1/static/{rest...}", ""),
		pub("health", "GET", "/api/health", ""),
		pub("head_user", "HEAD", "/api/v1/users/{id}", ""),
		pub("api_post", "POST", "", "/api/"),
		pub("any", "*", "", "/"),
		pub("any_exact", "*", "/api/v2/x", ""),
	}
	return cfg
}

// Prefix routes: whole segments, templates before prefixes, the longest prefix first, HEAD
// following GET.
func TestMatchPrefix(t *testing.T) {
	pol := mustCompile(t, prefixRoutes())
	tests := []struct {
		method, path string
		wantRoute    string
		want         authz.Reason
	}{
		{"GET", "/api/v1/users/alice", "user", authz.OK},                       // template beats a longer prefix
		{"GET", "/api/v1/users", "api_v1", authz.OK},                           // no template: the longest prefix
		{"GET", "/api/v1/users/alice/extra", "api_v1", authz.OK},               // the template does not match
		{"GET", "/api/v1/static/a/b", "static", authz.OK},                      // a catch-all template beats a prefix
		{"GET", "/api/v1", "api_v1", authz.OK},                                 // a prefix matches its own path
		{"GET", "/api/v1/", "api_v1", authz.OK},                                //
		{"GET", "/api/v2/x", "api", authz.OK},                                  // the method's prefix beats a `*` template
		{"GET", "/api", "api", authz.OK},                                       //
		{"GET", "/api/", "api", authz.OK},                                      // a bare /api/ matches /api/
		{"GET", "/api/health", "health", authz.OK},                             //
		{"GET", "/apikeys", "any", authz.OK},                                   // whole segments: /api is not a prefix of /apikeys
		{"GET", "/ap", "any", authz.OK},                                        //
		{"GET", "/", "any", authz.OK},                                          //
		{"GET", "/%61pi/v1/x", "api_v1", authz.OK},                             // segments compared decoded
		{"GET", "/api/v1/x?y=/api/", "api_v1", authz.OK},                       // query ignored
		{"POST", "/api/v1/users/alice", "api_post", authz.OK},                  //
		{"DELETE", "/api/x", "any", authz.OK},                                  //
		{"DELETE", "/api/v2/x", "any_exact", authz.OK},                         // within `*`: template first
		{"HEAD", "/api/v1/users/alice", "head_user", authz.OK},                 // a HEAD route wins
		{"HEAD", "/api/v1/other", "api_v1", authz.OK},                          // HEAD follows GET
		{"HEAD", "/api/health", "health", authz.OK},                            //
		{"GET", "/api/../admin", "", authz.MalformedRequest},                   // checked before matching
		{"GET", "/api/%2e%2e/admin", "", authz.MalformedRequest},               //
		{"GET", "/api//admin", "", authz.MalformedRequest},                     //
		{"OPTIONS", "/api/v1/users/alice/../../x", "", authz.MalformedRequest}, //
	}
	for _, tt := range tests {
		var ps authz.Params
		r, reason := pol.Match(tt.method, tt.path, &ps)
		got := ""
		if r != nil {
			got = r.Name
		}
		if got != tt.wantRoute || reason != tt.want {
			t.Errorf("Match(%s, %q) = %q %v, want %q %v", tt.method, tt.path, got, reason, tt.wantRoute, tt.want)
		}
	}
}

func TestMatchPrefixWithoutFallback(t *testing.T) {
	cfg := testConfig()
	cfg.Routes = []authz.RouteConfig{
		{Name: "api", Method: "GET", Prefix: "/api/", Public: true},
		{Name: "head", Method: "HEAD", Path: "/other", Public: true},
	}
	pol := mustCompile(t, cfg)
	for _, tt := range []struct {
		method, path string
		want         authz.Reason
	}{
		{"GET", "/apix", authz.NoRoute},
		{"GET", "/other", authz.NoRoute},
		{"POST", "/api/x", authz.NoRoute},
		{"HEAD", "/api/x", authz.OK}, // a HEAD route elsewhere does not stop HEAD following GET here
	} {
		var ps authz.Params
		if _, got := pol.Match(tt.method, tt.path, &ps); got != tt.want {
			t.Errorf("Match(%s, %q) = %v, want %v", tt.method, tt.path, got, tt.want)
		}
	}
}

func TestPrefixRoute(t *testing.T) {
	cfg := testConfig()
	cfg.Routes = []authz.RouteConfig{
		{Name: "docs", Method: "GET", Prefix: "/docs/", Action: "docs:read", SkipOwnership: true,
			RateLimits: []authz.RateLimitConfig{{Domain: "api", Descriptors: []authz.DescriptorConfig{{Key: "route", From: "route.name"}}}}},
	}
	pol := mustCompile(t, cfg)
	var ps authz.Params
	r, _ := pol.Match("GET", "/docs/a/b", &ps)
	if r == nil || r.Prefix != "/docs" || r.Path != "" || ps.Len() != 0 {
		t.Fatalf("Match: got %+v with %d params, want the prefix route /docs and none", r, ps.Len())
	}
	alice := authn.Principal{Subject: "alice", Roles: []string{"customer"}, Method: authn.MethodAPIKey}
	if got := pol.Check(alice, "GET", "/docs/a/b", &ps); !got.Allowed {
		t.Errorf("Check: got %v, want allowed", got)
	}
	if got := pol.Check(authn.Principal{Subject: "bob", Roles: []string{"nobody"}}, "GET", "/docs", &ps); got.Reason != authz.MissingRole {
		t.Errorf("Check without the role: got %v, want missing_role", got)
	}
}
