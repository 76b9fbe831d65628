package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// jwtAdminConfig trusts one JWT issuer (its JWKS in jwksPath) and has one admin route that
// needs the admin:write scope.
func jwtAdminConfig(jwksPath string) string {
	return `authn:
  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [warden]
        jwks_file: ` + jwksPath + `
        claims: {roles: roles}
authz:
  roles:
    operator: {permissions: ["admin:write", "orders:read"]}
  routes:
    - name: admin_users
      method: POST
      path: /admin/users
      action: admin:write
      required_scopes: [admin:write]
`
}

// A scope string is split on U+0020 only (RFC 6749 §3.3): a token signed by the trusted
// issuer whose scope hides admin:write behind another Unicode space is refused on the admin
// route, through ext_authz and through warden.v1 Check alike (issue 16 item 1).
func TestJWTScopesSplitOnlyOnSpace(t *testing.T) {
	dir := t.TempDir()
	issuer, jwksPath := newIssuer(t, dir)
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(jwtAdminConfig(jwksPath)))
	r := start(t, nil, "-config", p)
	cc := dial(t, r.GRPC)
	envoy, warden := authv3.NewAuthorizationClient(cc), wardenv1.NewWardenServiceClient(cc)
	token := func(scope string) string {
		now := time.Now()
		return issuer.token(t, map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "eve",
			"roles": []string{"operator"}, "scope": scope, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	}
	for _, tc := range []struct {
		name, scope string
		allowed     bool
	}{
		{"U+0020 separates", "orders:read admin:write", true},
		{"no-break space inside", "orders:read\u00a0admin:write", false},
		{"trailing no-break space", "admin:write\u00a0", false},
		{"leading no-break space", "\u00a0admin:write", false},
		{"em space", "orders:read\u2003admin:write", false},
		{"ideographic space", "orders:read\u3000admin:write", false},
		{"tab", "orders:read\tadmin:write", false},
		{"newline", "orders:read\nadmin:write", false},
		{"next line", "orders:read\u0085admin:write", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := token(tc.scope)
			req := envoytest.Request{Method: "POST", Path: "/admin/users", Host: "api",
				Headers: [][2]string{{"authorization", "Bearer " + tok}}}
			resp := extAuthz(t, envoy, req)
			if got := resp.GetOkResponse() != nil; got != tc.allowed {
				t.Errorf("ext_authz: allowed %v, want %v (%v)", got, tc.allowed, resp)
			}
			if !tc.allowed && resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
				t.Errorf("ext_authz: got %v, want denied 403", resp)
			}
			w, err := warden.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "POST", Path: "/admin/users", Headers: map[string]string{"authorization": "Bearer " + tok}}})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if w.Allowed != tc.allowed || (!tc.allowed && w.Reason != wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE) {
				t.Errorf("warden.v1 Check: got allowed %v reason %v, want allowed %v (MISSING_SCOPE when denied)", w.Allowed, w.Reason, tc.allowed)
			}
		})
	}
}
