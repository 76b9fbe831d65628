package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/testcred"
	"github.com/wardenhq/warden/internal/testutil"
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
    - {name: orders, method: GET, path: /v1/orders, action: orders:read}
`
}

// startJWTAdmin starts Warden on jwtAdminConfig and returns its token issuer and a connection.
func startJWTAdmin(t *testing.T) (*jwtIssuer, *grpc.ClientConn) {
	t.Helper()
	dir := t.TempDir()
	issuer, jwksPath := newIssuer(t, dir)
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(jwtAdminConfig(jwksPath)))
	r := start(t, nil, "-config", p)
	return issuer, dial(t, r.GRPC)
}

// A scope string is split on U+0020 only (RFC 6749 §3.3): a token signed by the trusted
// issuer whose scope hides admin:write behind another Unicode space is refused on the admin
// route, through ext_authz and through warden.v1 Check alike (issue 16 item 1). Such a scope
// is not an RFC 6749 scope-token, so the token is refused as malformed (401) wherever it goes:
// passed on in x-warden-scopes, it could be split there on the other space.
func TestJWTScopesSplitOnlyOnSpace(t *testing.T) {
	issuer, cc := startJWTAdmin(t)
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
			if !tc.allowed && resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
				t.Errorf("ext_authz: got %v, want denied 401", resp)
			}
			w, err := warden.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "POST", Path: "/admin/users", Headers: map[string]string{"authorization": "Bearer " + tok}}})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if w.Allowed != tc.allowed || (!tc.allowed && w.Reason != wardenv1.DenyReason_DENY_REASON_MALFORMED_CREDENTIALS) {
				t.Errorf("warden.v1 Check: got allowed %v reason %v, want allowed %v (MALFORMED_CREDENTIALS when denied)", w.Allowed, w.Reason, tc.allowed)
			}
		})
	}
}

// The identity headers cannot be forged by a value of the trusted issuer's token: a role
// holding a comma ("viewer,admin" would read as two roles in the comma-separated
// x-warden-roles), a scope holding a space (an scp array element, two scopes in x-warden-scopes)
// or a subject holding CR LF (a header line of its own) would reach the upstream on a route the
// token may use. Such a token is refused as malformed; a well-formed one passes with its headers.
func TestIdentityHeadersCannotBeForged(t *testing.T) {
	issuer, cc := startJWTAdmin(t)
	envoy := authv3.NewAuthorizationClient(cc)
	for _, tc := range []struct {
		name   string
		claims map[string]any
		roles  string // x-warden-roles when allowed; "" when refused
	}{
		{"well-formed", map[string]any{"roles": []string{"operator", "viewer"}, "scope": "orders:read"}, "operator,viewer"},
		{"comma in a role", map[string]any{"roles": []string{"operator", "viewer,admin"}}, ""},
		{"space in an scp scope", map[string]any{"roles": []string{"operator"}, "scp": []string{"orders:read", "orders:read admin:write"}}, ""},
		{"CR LF in the subject", map[string]any{"roles": []string{"operator"}, "sub": "eve\r\nx-warden-roles: admin"}, ""},
		{"NUL in the jti", map[string]any{"roles": []string{"operator"}, "jti": "j-1\x00"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			claims := map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "eve",
				"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
			maps.Copy(claims, tc.claims)
			resp := extAuthz(t, envoy, envoytest.Request{Method: "GET", Path: "/v1/orders", Host: "api",
				Headers: [][2]string{{"authorization", "Bearer " + issuer.token(t, claims)}}})
			if tc.roles == "" {
				if got := resp.GetDeniedResponse().GetStatus().GetCode(); got != 401 {
					t.Fatalf("ext_authz: got %v, want denied 401", resp)
				}
				return
			}
			got := ""
			for _, h := range resp.GetOkResponse().GetHeaders() {
				if h.GetHeader().GetKey() == "x-warden-roles" {
					got = h.GetHeader().GetValue()
				}
			}
			if got != tc.roles {
				t.Errorf("ext_authz: x-warden-roles %q, want %q (%v)", got, tc.roles, resp)
			}
		})
	}
}

// weakJWKS is a JWK Set holding one RSA-1024 key, which Warden refuses.
func weakJWKS(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return fmt.Sprintf("{\"keys\": [\n  {\"kty\": \"RSA\", \"kid\": \"weak\", \"use\": \"sig\", \"n\": %q, \"e\": %q}\n]}",
		b64(k.N.Bytes()), b64(big.NewInt(int64(k.E)).Bytes()))
}

// A config whose JWKS file holds an RSA-1024 key is refused when it is built, by
// AdminService.ReloadConfig and by the file watcher, with the JWKS file's line; the running
// config, and its keys, stay (issue 16 item 2).
func TestJWTReloadWithWeakJWKSKeepsKeys(t *testing.T) {
	dir := t.TempDir()
	issuer, jwksPath := newIssuer(t, dir)
	adminKey, adminEntry := staticKey(t, "ops", "warden-admin")
	weakPath := filepath.Join(dir, "weak.json")
	writeFile(t, weakPath, []byte(weakJWKS(t)))
	config := func(jwks string) []byte {
		return []byte(`authn:
  api_keys:
    environment: live
    pepper: ${PEPPER}
    keys:
` + adminEntry + `  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [warden]
        jwks_file: ` + jwks + `
        claims: {roles: roles}
authz:
  default_allow: true
`)
	}
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, config(jwksPath))
	r := start(t, map[string]string{"PEPPER": testPepper}, "-config", p)
	cc := dial(t, r.GRPC)
	warden, admin := wardenv1.NewWardenServiceClient(cc), wardenv1.NewAdminServiceClient(cc)
	v1 := configVersion(t, r.Admin)
	n := 0
	wantAccepted := func(when string) {
		t.Helper()
		n++ // a new token each time, so that no cache answers
		now := time.Now()
		tok := issuer.token(t, map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "bob",
			"jti": fmt.Sprint("j-", n), "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
		resp, err := warden.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
			Method: "GET", Path: "/anything", Headers: map[string]string{"authorization": "Bearer " + tok}}})
		if err != nil || !resp.Allowed {
			t.Fatalf("%s: got %v, %v; want a valid token accepted", when, resp, err)
		}
	}
	wantAccepted("before the reload")

	// AdminService.ReloadConfig reports the JWKS file and line.
	writeFile(t, p, config(weakPath))
	asAdmin := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminKey)
	_, err := admin.ReloadConfig(asAdmin, &wardenv1.ReloadConfigRequest{})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), weakPath+`:2: key 0 (kid "weak"): RSA key of 1024 bits`) {
		t.Fatalf("ReloadConfig: got %v, want FAILED_PRECONDITION naming %s:2", err, weakPath)
	}
	if got := configVersion(t, r.Admin); got != v1 {
		t.Fatalf("version after a refused reload: got %s, want the old %s", got, v1)
	}
	wantAccepted("after a refused ReloadConfig")

	// The file watcher does the same (the write above was seen too: wait for its log line).
	testutil.WaitFor(t, 10*time.Second, "the watcher's reload error", func() bool {
		return strings.Contains(r.logs.String(), `config reload failed; keeping the running config`) &&
			strings.Contains(r.logs.String(), `authn.jwt.issuers[0].jwks_file: `+weakPath+`:2: key 0`)
	})
	if got := configVersion(t, r.Admin); got != v1 {
		t.Fatalf("version after a refused watched reload: got %s, want the old %s", got, v1)
	}
	wantAccepted("after a refused watched reload")

	// A good config is still taken, and its issuer keeps verifying.
	writeFile(t, p, config(jwksPath+"\n        drop_unacceptable_keys: true"))
	testutil.WaitFor(t, 10*time.Second, "the next good config", func() bool { return configVersion(t, r.Admin) != v1 })
	wantAccepted("after a good reload")
}

// jwksOnLoopback serves a replaceable body, or a redirect, and counts requests.
type jwksOnLoopback struct {
	*httptest.Server
	hits     atomic.Int64
	body     atomic.Pointer[string]
	redirect atomic.Pointer[string]
}

func newJWKSOnLoopback(t *testing.T, body string) *jwksOnLoopback {
	t.Helper()
	s := &jwksOnLoopback{}
	s.body.Store(&body)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if to := s.redirect.Load(); to != nil {
			http.Redirect(w, r, *to, http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, *s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

// refreshed waits until the server has answered two more fetches: the first of them has
// then ended and its set (or its refusal) is in place.
func (s *jwksOnLoopback) refreshed(t *testing.T) {
	t.Helper()
	h := s.hits.Load()
	testutil.WaitFor(t, 10*time.Second, "a JWKS refresh", func() bool { return s.hits.Load() >= h+2 })
}

// jwtURLConfig trusts two issuers, each with its JWKS at a URL refreshed every 100 ms.
func jwtURLConfig(urlA, urlB string) string {
	return `authn:
  jwt:
    issuers:
      - issuer: https://a.test
        audiences: [warden]
        jwks_url: ` + urlA + `
        refresh_interval: 100ms
      - issuer: https://b.test
        audiences: [warden]
        jwks_url: ` + urlB + `
        refresh_interval: 100ms
authz:
  default_allow: true
`
}

// decide asks for one request with tok through ext_authz and warden.v1 Check and returns
// whether each allowed it.
func decide(t *testing.T, cc *grpc.ClientConn, tok string) (envoyAllowed, checkAllowed bool) {
	t.Helper()
	req := envoytest.Request{Method: "GET", Path: "/anything", Host: "api", Headers: [][2]string{{"authorization", "Bearer " + tok}}}
	resp := extAuthz(t, authv3.NewAuthorizationClient(cc), req)
	w, err := wardenv1.NewWardenServiceClient(cc).Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
		Method: "GET", Path: "/anything", Headers: map[string]string{"authorization": "Bearer " + tok}}})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp.GetOkResponse() != nil, w.Allowed
}

// loneIssuer is a test issuer whose JWKS is written nowhere (served by a test server).
func loneIssuer(t *testing.T) *jwtIssuer {
	t.Helper()
	is, err := testcred.NewIssuer("")
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{is}
}

func issuerToken(t *testing.T, is *jwtIssuer, iss, jti string) string {
	t.Helper()
	now := time.Now()
	return is.token(t, map[string]any{"iss": iss, "aud": "warden", "sub": "bob", "jti": jti,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
}

// A token accepted (and cached) before its key left the JWKS is refused after the next
// refresh; the other issuer's tokens are unaffected (issue 21 item 1).
func TestJWTWithdrawnKeyOverTheServer(t *testing.T) {
	dir := t.TempDir()
	isA, isB, other := loneIssuer(t), loneIssuer(t), loneIssuer(t)
	srvA, srvB := newJWKSOnLoopback(t, isA.JWKS()), newJWKSOnLoopback(t, isB.JWKS())
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(jwtURLConfig(srvA.URL, srvB.URL)))
	r := start(t, nil, "-config", p)
	cc := dial(t, r.GRPC)
	tokA, tokB := issuerToken(t, isA, "https://a.test", "a"), issuerToken(t, isB, "https://b.test", "b")
	for i := 0; i < 2; i++ { // the second round is answered from the cache
		for _, tok := range []string{tokA, tokB} {
			if e, c := decide(t, cc, tok); !e || !c {
				t.Fatalf("before the removal: ext_authz %v, Check %v; want both allowed", e, c)
			}
		}
	}
	// A's key is withdrawn: its set now holds only another key (kid k2).
	withdrawn := strings.Replace(other.JWKS(), `"kid":"k1"`, `"kid":"k2"`, 1)
	srvA.body.Store(&withdrawn)
	srvA.refreshed(t)
	if e, c := decide(t, cc, tokA); e || c {
		t.Errorf("token of the withdrawn key after one refresh: ext_authz %v, Check %v; want both refused", e, c)
	}
	if e, c := decide(t, cc, tokB); !e || !c {
		t.Errorf("other issuer's token: ext_authz %v, Check %v; want both allowed", e, c)
	}
}

// A JWKS URL that starts redirecting to another host's key set does not change the trusted
// keys: the redirect is refused, the last good set stays (issue 21 item 2).
func TestJWTJWKSRedirectOverTheServer(t *testing.T) {
	dir := t.TempDir()
	good, evil := loneIssuer(t), loneIssuer(t)
	srvA, srvEvil := newJWKSOnLoopback(t, good.JWKS()), newJWKSOnLoopback(t, evil.JWKS())
	srvB := newJWKSOnLoopback(t, good.JWKS())
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(jwtURLConfig(srvA.URL, srvB.URL)))
	r := start(t, nil, "-config", p)
	cc := dial(t, r.GRPC)
	if e, c := decide(t, cc, issuerToken(t, good, "https://a.test", "g0")); !e || !c {
		t.Fatalf("before the redirect: ext_authz %v, Check %v; want both allowed", e, c)
	}
	to := srvEvil.URL + "/jwks.json"
	srvA.redirect.Store(&to)
	srvA.refreshed(t)
	if e, c := decide(t, cc, issuerToken(t, evil, "https://a.test", "e1")); e || c {
		t.Errorf("token of the redirect target's key: ext_authz %v, Check %v; want both refused", e, c)
	}
	if e, c := decide(t, cc, issuerToken(t, good, "https://a.test", "g1")); !e || !c {
		t.Errorf("new token of the trusted key: ext_authz %v, Check %v; want both allowed (the last good set)", e, c)
	}
	if n := srvEvil.hits.Load(); n != 0 {
		t.Errorf("the redirect target was fetched %d times, want 0", n)
	}
}
