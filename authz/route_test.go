package authz_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
)

func routeConfig() authz.Config {
	cfg := testConfig()
	cfg.Routes = []authz.RouteConfig{
		{Name: "get_order", Method: "GET", Path: "/v1/users/{user_id}/orders/{order_id}", Action: "orders:read", OwnerParam: "user_id", IDParam: "order_id",
			RateLimits: []authz.RateLimitConfig{{Domain: "api", Descriptors: []authz.DescriptorConfig{{Key: "user", From: "principal.subject"}, {Key: "route", From: "route.name"}, {Key: "order", From: "param.order_id"}}}}},
		{Name: "list_orders", Method: "GET", Path: "/v1/users/{user_id}/orders", Action: "orders:list", OwnerParam: "user_id"},
		{Name: "my_orders", Method: "GET", Path: "/v1/users/me/orders", Action: "orders:list", SkipOwnership: true},
		{Name: "create_order", Method: "POST", Path: "/v1/users/{user_id}/orders", Action: "orders:write", OwnerParam: "user_id",
			RequiredScopes: []string{"orders:write"}, AllowedMethods: []string{"api_key", "jwt"}, StripHeaders: []string{"X-Owner"}},
		{Name: "tenant_order", Method: "GET", Path: "/v1/tenants/{tenant}/users/{user_id}/orders/{order_id}", Action: "orders:read", OwnerParam: "user_id", IDParam: "order_id", TenantParam: "tenant"},
		{Name: "profile", Method: "GET", Path: "/v1/users/{id}/profile", Action: "profile:read"},
		{Name: "health", Method: "*", Path: "/v1/health", Public: true},
		{Name: "static", Method: "GET", Path: "/static/{path...}", Public: true},
		{Name: "stripe", Method: "POST", Path: "/webhooks/stripe", Webhook: "stripe"},
		{Name: "root", Method: "GET", Path: "/", Public: true},
	}
	return cfg
}

func TestMatch(t *testing.T) {
	pol := mustCompile(t, routeConfig())
	long := "/v1/users/" + strings.Repeat("a", 2100) + "/orders"
	many := strings.Repeat("/a", 40)
	tests := []struct {
		method, path string
		wantRoute    string
		wantParams   []string
		want         authz.Reason
	}{
		{"GET", "/v1/users/alice/orders/o-1", "get_order", []string{"alice", "o-1"}, authz.OK},
		{"GET", "/v1/users/alice/orders/o-1?owner=bob&x=/../", "get_order", []string{"alice", "o-1"}, authz.OK},
		{"GET", "/v1/users/me/orders", "my_orders", nil, authz.OK},
		{"GET", "/v1/users/me/orders/o-1", "get_order", []string{"me", "o-1"}, authz.OK}, // literal branch has no such child: falls back
		{"GET", "/v1/users/me/profile", "profile", []string{"me"}, authz.OK},
		{"GET", "/v1/users/alice/orders/", "list_orders", []string{"alice"}, authz.OK},
		{"POST", "/v1/users/alice/orders", "create_order", []string{"alice"}, authz.OK},
		{"GET", "/v1/tenants/acme/users/alice/orders/o-1", "tenant_order", []string{"acme", "alice", "o-1"}, authz.OK},
		{"HEAD", "/v1/health", "health", nil, authz.OK},
		{"GET", "/v1/health", "health", nil, authz.OK},
		{"GET", "/static/css/site.css", "static", []string{"css/site.css"}, authz.OK},
		{"GET", "/static/a%20b", "static", []string{"a b"}, authz.OK},
		{"GET", "/", "root", nil, authz.OK},
		{"GET", "/?q=1", "root", nil, authz.OK},
		{"GET", "/v1/%75sers/alice/orders", "list_orders", []string{"alice"}, authz.OK},
		{"GET", "/v1/users/al%69ce/orders", "list_orders", []string{"alice"}, authz.OK},
		{"DELETE", "/v1/users/alice/orders", "", nil, authz.NoRoute},
		{"HEAD", "/v1/users/alice/orders", "list_orders", []string{"alice"}, authz.OK}, // HEAD follows GET
		{"HEAD", "/v1/users/alice/orders/o-1/items", "", nil, authz.NoRoute},
		{"GET", "/static", "", nil, authz.NoRoute},
		{"GET", "/V1/users/alice/orders", "", nil, authz.NoRoute},
		{"GET", "/v1/users/alice/orders/o-1/items", "", nil, authz.NoRoute},
		{"GET", "/v2/anything", "", nil, authz.NoRoute},
		// Normalization attacks.
		{"GET", "/v1/users/alice/../bob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/bob/orders/../../alice/orders/o-1", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice/%2e%2e/bob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice/.%2E/bob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/./alice/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%2Fbob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%2fbob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%252e%252e/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users//orders", "", nil, authz.MalformedRequest},
		{"GET", "//v1/users/alice/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice/orders//", "", nil, authz.MalformedRequest},
		{"GET", `/v1/users/alice\..\bob/orders`, "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%5C..%5Cbob/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice;x=..;/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/..;/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%00/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice\x00/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%0a/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%zz/orders", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice%4", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/alice#x", "", nil, authz.MalformedRequest},
		{"GET", "/v1/users/\xff/orders", "", nil, authz.MalformedRequest},
		{"GET", "v1/users/alice/orders", "", nil, authz.MalformedRequest},
		{"GET", "", "", nil, authz.MalformedRequest},
		{"GET", "*", "", nil, authz.MalformedRequest},
		{"GET", long, "", nil, authz.MalformedRequest},
		{"GET", many, "", nil, authz.MalformedRequest},
	}
	for _, tt := range tests {
		var ps authz.Params
		r, reason := pol.Match(tt.method, tt.path, &ps)
		gotRoute := ""
		if r != nil {
			gotRoute = r.Name
		}
		var gotParams []string
		for i := range ps.Len() {
			gotParams = append(gotParams, ps.Value(i))
		}
		if reason != tt.want || gotRoute != tt.wantRoute || !cmp.Equal(gotParams, tt.wantParams) {
			t.Errorf("Match(%s, %.60q) = %q %q %v, want %q %q %v", tt.method, tt.path, gotRoute, gotParams, reason, tt.wantRoute, tt.wantParams, tt.want)
		}
	}
}

func TestMatchStrictTrailingSlash(t *testing.T) {
	cfg := routeConfig()
	cfg.TrailingSlash = "strict"
	pol := mustCompile(t, cfg)
	var ps authz.Params
	if _, got := pol.Match("GET", "/v1/users/alice/orders/", &ps); got != authz.MalformedRequest {
		t.Errorf("strict trailing slash: got %v, want %v", got, authz.MalformedRequest)
	}
	if _, got := pol.Match("GET", "/", &ps); got != authz.OK {
		t.Errorf("root: got %v, want %v", got, authz.OK)
	}
}

func TestParamsGet(t *testing.T) {
	pol := mustCompile(t, routeConfig())
	var ps authz.Params
	r, _ := pol.Match("GET", "/v1/tenants/acme/users/alice/orders/o-1", &ps)
	got := []string{ps.Get("tenant"), ps.Get("user_id"), ps.Get("order_id"), ps.Get("nope")}
	if diff := cmp.Diff(got, []string{"acme", "alice", "o-1", ""}); diff != "" {
		t.Errorf("Get (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(r.Resource(&ps), authz.Resource{Type: "orders", ID: "o-1", Owner: "alice", Tenant: "acme"}); diff != "" {
		t.Errorf("Resource (-got +want):\n%s", diff)
	}
	want := []authz.RateLimitSpec{{Domain: "api", Entries: []authz.DescriptorSpec{
		{Key: "user", Source: authz.FromPrincipalSubject, ParamIndex: -1},
		{Key: "route", Source: authz.FromRouteName, ParamIndex: -1},
		{Key: "order", Source: authz.FromParam, Name: "order_id", ParamIndex: 1},
	}}}
	r, _ = pol.Match("GET", "/v1/users/alice/orders/o-1", &ps)
	if diff := cmp.Diff(r.RateLimits, want); diff != "" {
		t.Errorf("RateLimits (-got +want):\n%s", diff)
	}
}

func TestRouteCompileErrors(t *testing.T) {
	route := func(name, method, path string) authz.RouteConfig {
		return authz.RouteConfig{Name: name, Method: method, Path: path, Action: "items:read"}
	}
	pfx := func(name, method, prefix string) authz.RouteConfig {
		return authz.RouteConfig{Name: name, Method: method, Prefix: prefix, Public: true}
	}
	tmpl := func(name, method, path string) authz.RouteConfig {
		return authz.RouteConfig{Name: name, Method: method, Path: path, Public: true}
	}
	scoped := func(s authz.ScopeRequirement) authz.RouteConfig {
		return authz.RouteConfig{Name: "s", Method: "GET", Path: "/s/{id}", Scopes: s}
	}
	tests := []struct {
		name   string
		routes []authz.RouteConfig
		want   []string
	}{
		{"same shape, other names", []authz.RouteConfig{route("a", "GET", "/a/{x}"), route("b", "GET", "/a/{y}")}, []string{"authz.routes[1].path"}},
		{"duplicate", []authz.RouteConfig{route("a", "GET", "/a/b"), route("b", "GET", "/a/b")}, []string{"authz.routes[1].path"}},
		{"two catch-alls", []authz.RouteConfig{route("a", "GET", "/a/{x...}"), route("b", "GET", "/a/{y...}")}, []string{"authz.routes[1].path"}},
		{"overlap is fine", []authz.RouteConfig{route("a", "GET", "/a/{x}"), route("b", "GET", "/a/{x...}"), route("c", "*", "/a/{x}"), route("d", "GET", "/a/b"), route("e", "POST", "/a/{x}")}, nil},
		{"duplicate name", []authz.RouteConfig{route("a", "GET", "/a"), route("a", "GET", "/b")}, []string{"authz.routes[1].name"}},
		{"bad templates", []authz.RouteConfig{
			route("a", "GET", "a"), route("b", "GET", "/a//b"), route("c", "GET", "/a/"), route("d", "GET", "/a/{x}.json"),
			route("e", "GET", "/{x...}/a"), route("f", "GET", "/{x}/{x}"), route("g", "GET", "/a/../b"), route("h", "GET", "/a%2Fb"),
			route("i", "GET", "/{1x}"), route("j", "GET", "/**"), route("k", "GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"),
		}, []string{"authz.routes[0].path", "authz.routes[1].path", "authz.routes[2].path", "authz.routes[3].path", "authz.routes[4].path",
			"authz.routes[5].path", "authz.routes[6].path", "authz.routes[7].path", "authz.routes[8].path", "authz.routes[9].path", "authz.routes[10].path"}},
		{"fields", []authz.RouteConfig{{Name: "a", Method: "get", Path: "/a/{x}/{rest...}", Action: "orders",
			OwnerParam: "nope", IDParam: "rest", RequiredScopes: []string{"a b"}, AllowedMethods: []string{"password"}, StripHeaders: []string{"bad header"},
			RateLimits: []authz.RateLimitConfig{{Descriptors: []authz.DescriptorConfig{{Key: "k"}, {Key: "k", Value: "v", From: "route.name"}, {Key: "k", From: "param.zz"}, {Key: "k", From: "body.owner"}}}},
			Webhook:    "stripe", Public: true}},
			[]string{"authz.routes[0].method", "authz.routes[0].webhook", "authz.routes[0].action", "authz.routes[0].owner_param", "authz.routes[0].id_param",
				"authz.routes[0].required_scopes[0]", "authz.routes[0].allowed_methods[0]", "authz.routes[0].strip_headers[0]",
				"authz.routes[0].rate_limits[0].domain", "authz.routes[0].rate_limits[0].descriptors[0]", "authz.routes[0].rate_limits[0].descriptors[1]",
				"authz.routes[0].rate_limits[0].descriptors[2]", "authz.routes[0].rate_limits[0].descriptors[3]"}},
		{"owned type needs its owner param", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/orders/{id}", Action: "orders:read", IDParam: "id"}}, []string{"authz.routes[0].owner_param"}},
		{"attribute ownership needs skip", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/secrets/{id}", Action: "secrets:read"}}, []string{"authz.routes[0].skip_ownership"}},
		{"id ownership needs id param", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/accounts/{id}", Action: "accounts:read"}}, []string{"authz.routes[0].id_param"}},
		// Prefixes and plain scopes.
		{"same prefix, with and without slash", []authz.RouteConfig{pfx("a", "GET", "/api/"), pfx("b", "GET", "/api")}, []string{"authz.routes[1].prefix"}},
		{"two root prefixes", []authz.RouteConfig{pfx("a", "*", "/"), pfx("b", "*", "/")}, []string{"authz.routes[1].prefix"}},
		{"prefix then catch-all", []authz.RouteConfig{pfx("a", "GET", "/api/"), tmpl("b", "GET", "/api/{rest...}")}, []string{"authz.routes[1].path"}},
		{"catch-all then prefix", []authz.RouteConfig{tmpl("a", "GET", "/api/{rest...}"), pfx("b", "GET", "/api/")}, []string{"authz.routes[1].prefix"}},
		{"overlap is fine", []authz.RouteConfig{pfx("a", "GET", "/api/"), pfx("b", "POST", "/api/"), pfx("c", "*", "/api/"), tmpl("d", "GET", "/api"),
			tmpl("e", "GET", "/api/{x}"), pfx("f", "GET", "/api/v1/"), tmpl("g", "GET", "/{x}/{y...}"), pfx("h", "GET", "/")}, nil},
		{"root prefix and root catch-all", []authz.RouteConfig{tmpl("a", "GET", "/{x...}"), pfx("b", "GET", "/")}, []string{"authz.routes[1].prefix"}},
		{"bad prefixes", []authz.RouteConfig{pfx("a", "GET", "api/"), pfx("b", "GET", "//"), pfx("c", "GET", "/a//b/"), pfx("d", "GET", "/api/{x}/"),
			pfx("e", "GET", "/api/{rest...}"), pfx("f", "GET", "/a/../b/"), pfx("g", "GET", "/a%2F/")},
			[]string{"authz.routes[0].prefix", "authz.routes[1].prefix", "authz.routes[2].prefix", "authz.routes[3].prefix", "authz.routes[4].prefix", "authz.routes[5].prefix", "authz.routes[6].prefix"}},
		{"path and prefix", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/a", Prefix: "/a/", Public: true}}, []string{"authz.routes[0].prefix"}},
		{"neither path nor prefix", []authz.RouteConfig{{Name: "a", Method: "GET", Public: true}}, []string{"authz.routes[0].path"}},
		{"a prefix has no parameters", []authz.RouteConfig{{Name: "a", Method: "GET", Prefix: "/orders/", Action: "orders:read", OwnerParam: "id"}}, []string{"authz.routes[0].owner_param"}},
		{"bad scopes", []authz.RouteConfig{scoped(authz.ScopeRequirement{AnyOf: []string{"read", "a b"}, AllOf: []string{""}})}, []string{"authz.routes[0].scopes.any_of[1]", "authz.routes[0].scopes.all_of[0]"}},
		{"too many scopes", []authz.RouteConfig{scoped(authz.ScopeRequirement{AllOf: make([]string, 65)})}, []string{"authz.routes[0].scopes.all_of"}},
		{"scopes on a public route", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/a", Public: true, Scopes: authz.ScopeRequirement{AnyOf: []string{"read"}}}}, []string{"authz.routes[0].scopes"}},
		{"a scope-only route has no resource", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/a/{id}", IDParam: "id", ResourceType: "docs", Scopes: authz.ScopeRequirement{AnyOf: []string{"read"}}}},
			[]string{"authz.routes[0].resource_type", "authz.routes[0].id_param"}},
		{"no action and no scopes", []authz.RouteConfig{{Name: "a", Method: "GET", Path: "/a"}}, []string{"authz.routes[0].action"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Ownership["secrets"] = authz.OwnershipConfig{ResourceField: "resource.attributes.owner"}
			cfg.Ownership["accounts"] = authz.OwnershipConfig{ResourceField: "resource.id"}
			cfg.Routes = tt.routes
			_, err := authz.Compile(cfg)
			if diff := cmp.Diff(fieldPaths(err), tt.want); diff != "" {
				t.Errorf("error paths (-got +want):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	pol := mustCompile(t, routeConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Method: authn.MethodAPIKey}
	with := func(f func(*authn.Principal)) authn.Principal { p := alice; f(&p); return p }
	tests := []checkCase{
		{"own order", alice, "GET", "/v1/users/alice/orders/o-1", authz.OK},
		{"someone else's order", alice, "GET", "/v1/users/bob/orders/o-1", authz.NotOwner},
		{"own order in another tenant", alice, "GET", "/v1/tenants/globex/users/alice/orders/o-1", authz.OtherTenant},
		{"own order in own tenant", alice, "GET", "/v1/tenants/acme/users/alice/orders/o-1", authz.OK},
		{"collection scoped by backend", alice, "GET", "/v1/users/me/orders", authz.OK},
		{"no route", alice, "GET", "/v1/admin", authz.NoRoute},
		{"traversal", alice, "GET", "/v1/users/alice/../bob/orders", authz.MalformedRequest},
		{"no credentials", authn.Principal{}, "GET", "/v1/users/alice/orders/o-1", authz.NoCredentials},
		{"public without credentials", authn.Principal{}, "GET", "/v1/health", authz.OK},
		{"webhook", authn.Principal{}, "POST", "/webhooks/stripe", authz.WebhookUnverified},
		{"credential kind", with(func(p *authn.Principal) { p.Method = authn.MethodMTLS }), "POST", "/v1/users/alice/orders", authz.CredentialNotAllowed},
		{"required scope", with(func(p *authn.Principal) { p.Scopes = []string{"orders:read"} }), "POST", "/v1/users/alice/orders", authz.MissingScope},
		{"required scope by wildcard", with(func(p *authn.Principal) { p.Scopes = []string{"orders:*"} }), "POST", "/v1/users/alice/orders", authz.OK},
		{"unnarrowed credential", alice, "POST", "/v1/users/alice/orders", authz.OK},
		{"support reads", authn.Principal{Subject: "sam", Tenant: "warden", Roles: []string{"support"}}, "GET", "/v1/tenants/acme/users/alice/orders/o-1", authz.OK},
		{"support cannot create", authn.Principal{Subject: "sam", Roles: []string{"support"}, Method: authn.MethodJWT}, "POST", "/v1/users/alice/orders", authz.MissingRole},
	}
	runChecks(t, pol, tests)
}

// checkCase is a Check on a policy and the reason it must give.
type checkCase struct {
	name         string
	p            authn.Principal
	method, path string
	want         authz.Reason
}

func runChecks(t *testing.T, pol *authz.Policy, tests []checkCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ps authz.Params
			got := pol.Check(tt.p, tt.method, tt.path, &ps)
			if want := (authz.Decision{Allowed: tt.want == authz.OK, Reason: tt.want}); got != want {
				t.Errorf("Check(%s %s) = %v, want %v", tt.method, tt.path, got, want)
			}
		})
	}
}

func TestCheckDefaultAllow(t *testing.T) {
	cfg := routeConfig()
	cfg.DefaultAllow = true
	pol := mustCompile(t, cfg)
	var ps authz.Params
	if got, want := pol.Check(authn.Principal{Subject: "alice"}, "GET", "/v2/unknown", &ps), (authz.Decision{Allowed: true}); got != want {
		t.Errorf("authenticated: got %v, want %v", got, want)
	}
	if got, want := pol.Check(authn.Principal{}, "GET", "/v2/unknown", &ps), (authz.Decision{Reason: authz.NoCredentials}); got != want {
		t.Errorf("anonymous: got %v, want %v", got, want)
	}
	if got, want := pol.Check(authn.Principal{Subject: "alice"}, "GET", "/v2/../admin", &ps), (authz.Decision{Reason: authz.MalformedRequest}); got != want {
		t.Errorf("malformed: got %v, want %v", got, want)
	}
}

// The crucial property: the owner comes from the verified principal and the path only. A
// client that claims ownership in a header, a query parameter or a body changes nothing,
// whichever way an adapter passes a request in.
func TestOwnershipIgnoresHeadersAndBody(t *testing.T) {
	pol := mustCompile(t, routeConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Method: authn.MethodAPIKey}
	for _, target := range []string{"/v1/users/bob/orders/o-2", "/v1/users/alice/orders/o-1"} {
		var want authz.Decision
		for i, forge := range []struct {
			query  string
			header map[string]string
			body   map[string]string
		}{
			{},
			{header: map[string]string{"X-Owner": "bob", "X-User-Id": "bob", "X-Tenant": "globex", "X-Forwarded-User": "bob"}},
			{header: map[string]string{"X-Owner": "alice", "X-Tenant": "acme"}},
			{body: map[string]string{"owner": "bob", "user_id": "bob", "tenant": "globex"}},
			{body: map[string]string{"owner": "alice", "user_id": "alice"}},
			{query: "?owner=alice&user_id=alice"},
		} {
			body, _ := json.Marshal(forge.body)
			req := httptest.NewRequest("GET", target+forge.query, bytes.NewReader(body))
			for k, v := range forge.header {
				req.Header.Set(k, v)
			}
			// What an adapter can hand to Check: the request line and the principal.
			var ps authz.Params
			got := pol.Check(alice, req.Method, req.URL.RequestURI(), &ps)
			if i == 0 {
				want = got
				continue
			}
			if got != want {
				t.Errorf("%s with forged %+v: got %v, want %v (as without)", target, forge, got, want)
			}
		}
	}
}

func TestAuditor(t *testing.T) {
	var buf bytes.Buffer
	a := authz.NewAuditor(slog.New(slog.NewJSONHandler(&buf, nil)))
	pol := mustCompile(t, routeConfig())
	p := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Method: authn.MethodJWT, CredentialID: "jti-1", Claims: map[string]string{"secret": "s3cr3t"}}
	ctx := context.Background()
	var ps authz.Params
	d := pol.Check(p, "GET", "/v1/users/bob/orders/o-2?api_key=sk-live-leak", &ps)
	a.RecordCheck(ctx, p, "GET", "/v1/users/bob/orders/o-2?api_key=sk-live-leak", &ps, d)
	res := authz.Resource{Type: "orders", ID: "o-2", Owner: "bob", Tenant: "acme"}
	a.Record(ctx, p, "orders:read", res, pol.Authorize(p, "orders:read", res))
	a.Record(ctx, p, "orders:read", authz.Resource{Owner: "alice"}, authz.Decision{Allowed: true})

	var got []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		got = append(got, m)
	}
	common := map[string]any{"level": "WARN", "msg": "authz denied", "subject": "alice", "tenant": "acme", "credential_method": "jwt", "credential_id": "jti-1",
		"resource_type": "orders", "resource_id": "o-2", "resource_tenant": "", "reason": "not_owner", "public_reason": "not_found", "action": "orders:read"}
	want := []map[string]any{merge(common, map[string]any{"method": "GET", "path": "/v1/users/bob/orders/o-2", "route": "get_order"}), merge(common, map[string]any{"resource_tenant": "acme"})}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("audit records (-got +want):\n%s", diff)
	}
	if strings.Contains(buf.String(), "s3cr3t") || strings.Contains(buf.String(), "sk-live") {
		t.Errorf("audit log leaks a secret: %s", buf.String())
	}
}

func merge(a, b map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

// A compiled Policy is shared by every request goroutine; run under -race.
func TestPolicyConcurrentUse(t *testing.T) {
	pol := mustCompile(t, routeConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer", "refunder"}, Method: authn.MethodAPIKey}
	paid := authz.Resource{Type: "orders", Owner: "alice", Tenant: "acme", Attributes: map[string]string{"status": "paid"}}
	done := make(chan authz.Decision)
	for range 4 {
		go func() {
			var ps authz.Params
			var last authz.Decision
			for range 200 {
				last = pol.Check(alice, "GET", "/v1/users/alice/orders/o-1", &ps)
				if d := pol.Authorize(alice, "orders:refund", paid); !d.Allowed {
					last = d
				}
			}
			done <- last
		}()
	}
	for range 4 {
		if got, want := <-done, (authz.Decision{Allowed: true}); got != want {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}
