package authz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"

	"github.com/wardenhq/warden/fielderr"
)

func testConfig() authz.Config {
	return authz.Config{
		Roles: map[string]authz.RoleConfig{
			"viewer":     {Permissions: []string{"orders:read"}},
			"customer":   {Inherits: []string{"viewer"}, Permissions: []string{"orders:write", "orders:list", "profile:*", "invoices:read", "docs:*"}},
			"support":    {Permissions: []string{"*:read"}, CrossTenant: true},
			"support_rw": {Inherits: []string{"support"}, Permissions: []string{"orders:write"}},
			"admin":      {Permissions: []string{"*"}, CrossTenant: true},
			"superadmin": {Inherits: []string{"admin"}},
			"refunder": {Conditional: []authz.ConditionalPermission{
				{Permission: "orders:refund", When: `resource.attributes.status == "paid"`},
			}},
		},
		Ownership: map[string]authz.OwnershipConfig{
			"orders": {Overrides: []authz.OverrideConfig{
				{Role: "support", Verbs: []string{"read"}},
				{Role: "admin", Verbs: []string{"*"}},
			}},
			"invoices": {PrincipalField: "principal.claims.account"},
			"docs":     {When: `request.verb != "delete" || principal.tier == "gold"`},
		},
	}
}

func mustCompile(t testing.TB, cfg authz.Config) *authz.Policy {
	t.Helper()
	pol, err := authz.Compile(cfg)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return pol
}

func TestAuthorize(t *testing.T) {
	pol := mustCompile(t, testConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Method: authn.MethodAPIKey, CredentialID: "k1"}
	with := func(p authn.Principal, f func(*authn.Principal)) authn.Principal { f(&p); return p }
	aliceOrder := authz.Resource{Type: "orders", ID: "o-1", Owner: "alice", Tenant: "acme"}
	bobOrder := authz.Resource{Type: "orders", ID: "o-2", Owner: "bob", Tenant: "acme"}
	otherTenantOrder := authz.Resource{Type: "orders", ID: "o-3", Owner: "alice", Tenant: "globex"}
	support := authn.Principal{Subject: "sam", Tenant: "warden", Roles: []string{"support"}}
	refunder := authn.Principal{Subject: "rita", Tenant: "acme", Roles: []string{"refunder"}}
	refundable := func(status string) authz.Resource {
		r := authz.Resource{Type: "orders", ID: "o-9", Owner: "rita", Tenant: "acme"}
		if status != "" {
			r.Attributes = map[string]string{"status": status}
		}
		return r
	}

	tests := []struct {
		name   string
		p      authn.Principal
		action string
		res    authz.Resource
		want   authz.Reason
	}{
		{"owner reads", alice, "orders:read", aliceOrder, authz.OK},
		{"owner writes", alice, "orders:write", aliceOrder, authz.OK},
		{"type from action", alice, "orders:read", authz.Resource{ID: "o-1", Owner: "alice", Tenant: "acme"}, authz.OK},
		{"not owner", alice, "orders:read", bobOrder, authz.NotOwner},
		{"other tenant", alice, "orders:read", otherTenantOrder, authz.OtherTenant},
		{"principal without tenant", with(alice, func(p *authn.Principal) { p.Tenant = "" }), "orders:read", aliceOrder, authz.OtherTenant},
		{"neither has a tenant", with(alice, func(p *authn.Principal) { p.Tenant = "" }), "orders:read", authz.Resource{Owner: "alice"}, authz.OK},
		{"support reads across tenants and owners", support, "orders:read", otherTenantOrder, authz.OK},
		{"support cannot write", support, "orders:write", bobOrder, authz.MissingRole},
		{"override is per verb", with(support, func(p *authn.Principal) { p.Roles = []string{"support_rw"} }), "orders:write", bobOrder, authz.NotOwner},
		{"inherited override", with(support, func(p *authn.Principal) { p.Roles = []string{"support_rw"} }), "orders:read", bobOrder, authz.OK},
		{"admin overrides all verbs", with(support, func(p *authn.Principal) { p.Roles = []string{"admin"} }), "orders:delete", otherTenantOrder, authz.OK},
		{"inherited admin", with(support, func(p *authn.Principal) { p.Roles = []string{"superadmin"} }), "orders:delete", otherTenantOrder, authz.OK},
		{"inherited permission", with(alice, func(p *authn.Principal) { p.Roles = []string{"viewer"} }), "orders:read", aliceOrder, authz.OK},
		{"viewer cannot write", with(alice, func(p *authn.Principal) { p.Roles = []string{"viewer"} }), "orders:write", aliceOrder, authz.MissingRole},
		{"resource wildcard", alice, "profile:update", authz.Resource{}, authz.OK},
		{"verb wildcard", support, "profile:read", authz.Resource{}, authz.OK},
		{"unknown role", with(alice, func(p *authn.Principal) { p.Roles = []string{"ghost"} }), "orders:read", aliceOrder, authz.MissingRole},
		{"no roles", with(alice, func(p *authn.Principal) { p.Roles = nil }), "orders:read", aliceOrder, authz.MissingRole},
		{"scope narrows write", with(alice, func(p *authn.Principal) { p.Scopes = []string{"orders:read"} }), "orders:write", aliceOrder, authz.MissingScope},
		{"scope allows read", with(alice, func(p *authn.Principal) { p.Scopes = []string{"orders:read"} }), "orders:read", aliceOrder, authz.OK},
		{"scope resource wildcard", with(alice, func(p *authn.Principal) { p.Scopes = []string{"orders:*"} }), "orders:write", aliceOrder, authz.OK},
		{"scope verb wildcard", with(alice, func(p *authn.Principal) { p.Scopes = []string{"*:write"} }), "orders:write", aliceOrder, authz.OK},
		{"empty scopes narrow to nothing", with(alice, func(p *authn.Principal) { p.Scopes = []string{} }), "orders:read", aliceOrder, authz.MissingScope},
		{"plain scopes do not narrow", with(alice, func(p *authn.Principal) { p.Scopes = []string{"openid", "read", "write"} }), "orders:write", aliceOrder, authz.OK},
		{"plain scopes beside a permission scope", with(alice, func(p *authn.Principal) { p.Scopes = []string{"openid", "orders:read"} }), "orders:write", aliceOrder, authz.MissingScope},
		{"a scope that only looks like a permission", with(alice, func(p *authn.Principal) { p.Scopes = []string{"https://api.example.com/orders:write"} }), "orders:write", aliceOrder, authz.OK},
		{"scope does not grant", with(alice, func(p *authn.Principal) { p.Scopes = []string{"*"} }), "billing:read", authz.Resource{}, authz.MissingRole},
		{"no credentials", authn.Principal{}, "orders:read", aliceOrder, authz.NoCredentials},
		{"action without verb", alice, "orders", aliceOrder, authz.MalformedRequest},
		{"wildcard action", alice, "orders:*", aliceOrder, authz.MalformedRequest},
		{"empty action", alice, "", aliceOrder, authz.MalformedRequest},
		{"id with slash", alice, "orders:read", authz.Resource{ID: "o-1/../o-2", Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"id with backslash", alice, "orders:read", authz.Resource{ID: `o\1`, Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"dot-dot id", alice, "orders:read", authz.Resource{ID: "..", Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"control character id", alice, "orders:read", authz.Resource{ID: "o\x001", Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"invalid UTF-8 id", alice, "orders:read", authz.Resource{ID: "o\xff", Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"long id", alice, "orders:read", authz.Resource{ID: strings.Repeat("x", 257), Owner: "alice", Tenant: "acme"}, authz.MalformedResource},
		{"owner with slash", alice, "orders:read", authz.Resource{Owner: "alice/x", Tenant: "acme"}, authz.MalformedResource},
		{"owner missing", alice, "orders:read", authz.Resource{ID: "o-1", Tenant: "acme"}, authz.MalformedResource},
		{"bad type", alice, "orders:read", authz.Resource{Type: "or ders", Owner: "alice"}, authz.MalformedResource},
		{"claim owner", with(alice, func(p *authn.Principal) { p.Claims = map[string]string{"account": "acc-7"} }), "invoices:read", authz.Resource{Owner: "acc-7", Tenant: "acme"}, authz.OK},
		{"claim owner differs", with(alice, func(p *authn.Principal) { p.Claims = map[string]string{"account": "acc-8"} }), "invoices:read", authz.Resource{Owner: "acc-7", Tenant: "acme"}, authz.NotOwner},
		{"claim absent never matches", alice, "invoices:read", authz.Resource{Owner: "acc-7", Tenant: "acme"}, authz.NotOwner},
		{"condition true", refunder, "orders:refund", refundable("paid"), authz.OK},
		{"condition false", refunder, "orders:refund", refundable("shipped"), authz.ConditionFailed},
		{"condition on a missing key", refunder, "orders:refund", refundable(""), authz.ConditionFailed},
		{"conditional grant still needs ownership", refunder, "orders:refund", authz.Resource{Owner: "bob", Tenant: "acme", Attributes: map[string]string{"status": "paid"}}, authz.NotOwner},
		{"rule condition true", alice, "docs:read", authz.Resource{Owner: "alice"}, authz.OK},
		{"rule condition false", alice, "docs:delete", authz.Resource{Owner: "alice"}, authz.ConditionFailed},
		{"rule condition with tier", with(alice, func(p *authn.Principal) { p.Tier = "gold" }), "docs:delete", authz.Resource{Owner: "alice"}, authz.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pol.Authorize(tt.p, tt.action, tt.res)
			want := authz.Decision{Allowed: tt.want == authz.OK, Reason: tt.want}
			if got != want {
				t.Errorf("Authorize(%s, %q, %+v) = %v, want %v", tt.p.Subject, tt.action, tt.res, got, want)
			}
		})
	}
}

func TestTenantIsolationCanBeDisabled(t *testing.T) {
	cfg := testConfig()
	cfg.DisableTenantIsolation = true
	pol := mustCompile(t, cfg)
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}}
	got := pol.Authorize(alice, "orders:read", authz.Resource{Owner: "alice", Tenant: "globex"})
	if want := (authz.Decision{Allowed: true}); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestZeroConfigDeniesEverything(t *testing.T) {
	pol := mustCompile(t, authz.Config{})
	p := authn.Principal{Subject: "alice", Roles: []string{"admin"}}
	if got, want := pol.Authorize(p, "orders:read", authz.Resource{}), (authz.Decision{Reason: authz.MissingRole}); got != want {
		t.Errorf("Authorize = %v, want %v", got, want)
	}
	var ps authz.Params
	if got, want := pol.Check(p, "GET", "/v1/orders", &ps), (authz.Decision{Reason: authz.NoRoute}); got != want {
		t.Errorf("Check = %v, want %v", got, want)
	}
}

// Attributes are server-side data; an `owner` attribute (as a careless caller might fill from
// a header or a body) does not take part in ownership unless the rule names it.
func TestOwnerAttributeIsNotTheOwner(t *testing.T) {
	pol := mustCompile(t, testConfig())
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}}
	res := authz.Resource{Type: "orders", ID: "o-2", Owner: "bob", Tenant: "acme", Attributes: map[string]string{"owner": "alice", "tenant": "acme"}}
	if got, want := pol.Authorize(alice, "orders:read", res), (authz.Decision{Reason: authz.NotOwner}); got != want {
		t.Errorf("got %v, want %v", got, want)
	}
}

func fieldPaths(err error) []string {
	var paths []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *fielderr.Error
		if errors.As(err, &fe) {
			paths = append(paths, fe.Path)
		}
	}
	walk(err)
	return paths
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  authz.Config
		want []string
	}{
		{"bad permission", authz.Config{Roles: map[string]authz.RoleConfig{"support": {Permissions: []string{"orders:read", "orders", "a:b:c", "or ders:read"}}}},
			[]string{"authz.roles.support.permissions[1]", "authz.roles.support.permissions[2]", "authz.roles.support.permissions[3]"}},
		{"unknown parent", authz.Config{Roles: map[string]authz.RoleConfig{"a": {Inherits: []string{"b"}}}},
			[]string{"authz.roles.a.inherits[0]"}},
		{"cycle", authz.Config{Roles: map[string]authz.RoleConfig{"a": {Inherits: []string{"b"}}, "b": {Inherits: []string{"c"}}, "c": {Inherits: []string{"a"}}}},
			[]string{"authz.roles.c.inherits[0]"}},
		{"self inheritance", authz.Config{Roles: map[string]authz.RoleConfig{"a": {Inherits: []string{"a"}}}},
			[]string{"authz.roles.a.inherits[0]"}},
		{"bad role name", authz.Config{Roles: map[string]authz.RoleConfig{"a b": {}}}, []string{"authz.roles.a b"}},
		{"bad condition", authz.Config{Roles: map[string]authz.RoleConfig{"a": {Conditional: []authz.ConditionalPermission{
			{Permission: "x:y", When: `principal.nope == "1"`},
			{Permission: "x:y", When: `resource.id`},
			{Permission: "x:y"},
			{Permission: "x", When: "true"},
		}}}}, []string{"authz.roles.a.conditional[0].when", "authz.roles.a.conditional[1].when", "authz.roles.a.conditional[2].when", "authz.roles.a.conditional[3].permission"}},
		{"ownership", authz.Config{Roles: map[string]authz.RoleConfig{"a": {}}, Ownership: map[string]authz.OwnershipConfig{"orders": {
			ResourceField:  "resource.secret",
			PrincipalField: "principal.password",
			Overrides:      []authz.OverrideConfig{{Role: "ghost", Verbs: []string{"*"}}, {Role: "a"}, {Role: "a", Verbs: []string{"re ad"}}},
			When:           "1 +",
		}}}, []string{"authz.ownership.orders.resource_field", "authz.ownership.orders.principal_field", "authz.ownership.orders.overrides[0].role",
			"authz.ownership.orders.overrides[1].verbs", "authz.ownership.orders.overrides[2].verbs[0]", "authz.ownership.orders.when"}},
		{"limits", authz.Config{MaxIDLength: -1, MaxPathLength: -1, MaxSegments: -1, TrailingSlash: "keep"},
			[]string{"authz.max_id_length", "authz.trailing_slash", "authz.max_path_length", "authz.max_segments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := authz.Compile(tt.cfg)
			if err == nil {
				t.Fatalf("Compile succeeded, want errors at %v", tt.want)
			}
			if diff := cmp.Diff(fieldPaths(err), tt.want); diff != "" {
				t.Errorf("error paths (-got +want):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestPublicReasons(t *testing.T) {
	// An object of someone else, of another tenant, and a route that does not exist must
	// look the same to the client.
	for _, r := range []authz.Reason{authz.NotOwner, authz.OtherTenant, authz.NoRoute} {
		if got, want := r.Public(), authz.PublicNotFound; got != want {
			t.Errorf("%v.Public() = %v, want %v", r, got, want)
		}
	}
	tests := []struct {
		r    authz.Reason
		want authz.PublicReason
	}{
		{authz.OK, authz.PublicOK},
		{authz.NoCredentials, authz.PublicUnauthenticated},
		{authz.CredentialNotAllowed, authz.PublicUnauthenticated},
		{authz.WebhookUnverified, authz.PublicUnauthenticated},
		{authz.MissingScope, authz.PublicForbidden},
		{authz.MissingRole, authz.PublicForbidden},
		{authz.ConditionFailed, authz.PublicForbidden},
		{authz.MalformedResource, authz.PublicInvalid},
		{authz.MalformedRequest, authz.PublicInvalid},
		{authz.Reason(200), authz.PublicForbidden},
	}
	for _, tt := range tests {
		if got := tt.r.Public(); got != tt.want {
			t.Errorf("%v.Public() = %v, want %v", tt.r, got, tt.want)
		}
	}
	if got, want := authz.PublicNotFound.HTTPStatus(), 404; got != want {
		t.Errorf("HTTPStatus = %d, want %d", got, want)
	}
}
