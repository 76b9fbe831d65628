package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	"github.com/wardenhq/warden/internal/testutil"
)

func shouldRateLimit(t *testing.T, c rlsv3.RateLimitServiceClient, domain, key, value string) rlsv3.RateLimitResponse_Code {
	t.Helper()
	resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain,
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.GetOverallCode()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestEnvoySection(t *testing.T) {
	dir := t.TempDir()
	rl := filepath.Join(dir, "ratelimit")
	if err := os.Mkdir(rl, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRL := func(n int) {
		t.Helper()
		s := "domain: edge\ndescriptors:\n  - key: ip\n    rate_limit:\n      unit: hour\n      requests_per_unit: " + string(rune('0'+n)) + "\n"
		tmp := filepath.Join(dir, "edge.tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(rl, "edge.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	writeRL(1)
	envoyAddr := freeAddr(t)
	p := filepath.Join(dir, "warden.yaml")
	cfg := `rate_limit:
  domains:
    - domain: own
      descriptors:
        - key: k
          rate_limit: {unit: hour, requests_per_unit: 1}
envoy:
  ratelimit_config: ratelimit
  rls: {response_headers: true}
  ext_authz: {failure_mode: open}
  listen_addr: ` + envoyAddr + "\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	for _, addr := range []string{r.GRPC, envoyAddr} {
		c := rlsv3.NewRateLimitServiceClient(dial(t, addr))
		if got := shouldRateLimit(t, c, "nope", "k", addr); got != rlsv3.RateLimitResponse_OK {
			t.Errorf("%s: unknown domain: got %v, want OK", addr, got)
		}
	}
	c := rlsv3.NewRateLimitServiceClient(dial(t, envoyAddr))
	if a, b := shouldRateLimit(t, c, "own", "k", "x"), shouldRateLimit(t, c, "own", "k", "x"); a != rlsv3.RateLimitResponse_OK || b != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("rate_limit section's domain, 1 per hour: got %v then %v", a, b)
	}
	if a, b := shouldRateLimit(t, c, "edge", "ip", "1"), shouldRateLimit(t, c, "edge", "ip", "1"); a != rlsv3.RateLimitResponse_OK || b != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("ratelimit file's domain, 1 per hour: got %v then %v", a, b)
	}

	// Editing the ratelimit directory reloads the config.
	// A fresh ip each try: refused requests count, as in envoyproxy/ratelimit.
	writeRL(5)
	try := 0
	testutil.WaitFor(t, 10*time.Second, "the ratelimit config reload", func() bool {
		try++
		ip := "2." + strconv.Itoa(try)
		// Two hits fit the new limit of 5 where the old one allowed 1.
		if shouldRateLimit(t, c, "edge", "ip", ip) != rlsv3.RateLimitResponse_OK {
			return false
		}
		return shouldRateLimit(t, c, "edge", "ip", ip) == rlsv3.RateLimitResponse_OK
	})
}

func TestEnvoySectionErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Two files of one domain: refused, unless merged (MERGE_DOMAIN_CONFIG), which then
	// refuses only a top-level descriptor both define.
	two := filepath.Join(dir, "two")
	if err := os.Mkdir(two, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(two, name), []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ cfg, want string }{
		{"envoy:\n  ratelimit_config: " + bad + "\n", bad + ":5: descriptors[0].rate_limit.unit: invalid rate limit unit"},
		{"envoy:\n  ratelimit_config: " + two + "\n", `b.yaml:1: domain: duplicate domain "d"`},
		{"envoy:\n  ratelimit_config: " + two + "\n  merge_domain_config: true\n", "b.yaml:3: descriptors[0]: duplicate descriptor composite key 'd.k'"},
		{"envoy:\n  ext_authz:\n    failure_mode: maybe\n", ":3: envoy.ext_authz.failure_mode: must be closed, open or error"},
		{"envoy:\n  rls:\n    unavailable: allow\n", ":3: envoy.rls.unavailable: must be decision or error"},
		{"envoy:\n  bogus: 1\n", `:2: envoy: unknown field "bogus"`},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "w.yaml")
		if err := os.WriteFile(p, []byte(tt.cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		err := run(context.Background(), []string{"-config", p, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off"}, nil, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: got %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestEnvoyDisabled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(p, []byte("envoy:\n  rls: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	_, err := rlsv3.NewRateLimitServiceClient(dial(t, r.GRPC)).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("rls disabled: got %v, want UNIMPLEMENTED", err)
	}
}

// testCA is a certificate authority for client certificates, as the one behind Envoy's
// downstream TLS validation_context.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// client issues a client certificate for a SPIFFE id and returns it as Envoy sends it in
// source.certificate: the leaf's PEM, URL-encoded.
func (ca *testCA) client(t *testing.T, spiffeID string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := url.Parse(spiffeID)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "billing"}, URIs: []*url.URL{id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return envoytest.EncodeCertificate(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile replaces path's content by a rename, as editors and ConfigMaps do, so that a
// watcher never reads it half written.
func replaceFile(t *testing.T, path, s string) {
	t.Helper()
	writeFile(t, path+".tmp", []byte(s))
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// extAuthz asks Warden's ext_authz service over gRPC, as Envoy does.
func extAuthz(t *testing.T, c authv3.AuthorizationClient, r envoytest.Request) *authv3.CheckResponse {
	t.Helper()
	resp, err := c.Check(context.Background(), r.CheckRequest())
	if err != nil {
		t.Fatalf("Check %s %s: %v", r.Method, r.Path, err)
	}
	return resp
}

// wantAllowed checks that Envoy lets r through and that the upstream receives exactly one
// value for each identity header in want ("" meaning the header is removed), each set with
// OVERWRITE_IF_EXISTS_OR_ADD. It returns the upstream headers.
func wantAllowed(t *testing.T, r envoytest.Request, resp *authv3.CheckResponse, want map[string]string) map[string][]string {
	t.Helper()
	up, err := envoytest.Upstream(r, resp)
	if err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("%s %s: header %s: got append action %v, want OVERWRITE_IF_EXISTS_OR_ADD", r.Method, r.Path, h.GetHeader().GetKey(), h.GetAppendAction())
		}
	}
	for name, v := range want {
		got, ok := up[name]
		switch {
		case v == "" && ok:
			t.Errorf("%s %s: upstream %s: got %q, want it removed", r.Method, r.Path, name, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("%s %s: upstream %s: got %q, want [%q]", r.Method, r.Path, name, got, v)
		}
	}
	return up
}

// wantDenied checks that Envoy answers the client with httpStatus and the generic JSON body
// Warden's adapter sends, and that the body gives no detail away. It returns the response.
func wantDenied(t *testing.T, r envoytest.Request, resp *authv3.CheckResponse, httpStatus int, body string) *authv3.DeniedHttpResponse {
	t.Helper()
	d := resp.GetDeniedResponse()
	if d == nil || int(d.GetStatus().GetCode()) != httpStatus {
		t.Fatalf("%s %s: got %v, want denied %d", r.Method, r.Path, resp, httpStatus)
	}
	if d.GetBody() != body {
		t.Errorf("%s %s: body: got %q, want %q", r.Method, r.Path, d.GetBody(), body)
	}
	if got := envoytest.ClientHeader(resp, "content-type"); got != "application/json" {
		t.Errorf("%s %s: content-type: got %q, want application/json", r.Method, r.Path, got)
	}
	return d
}

const (
	body401 = `{"status":401,"message":"authentication required"}`
	body404 = `{"status":404,"message":"not found"}`
)

// TestEnvoyExtAuthzEndToEnd runs Warden with authentication and a route table, and asks its
// ext_authz service over gRPC with requests shaped as Envoy's filter shapes them: API key,
// JWT, bad and missing credentials, ownership, and client certificates forwarded by Envoy.
func TestEnvoyExtAuthzEndToEnd(t *testing.T) {
	dir := t.TempDir()
	aliceKey, aliceEntry := staticKey(t, "alice", "user")
	issuer, jwksPath := newIssuer(t, dir)
	ca, otherCA := newCA(t, "clients CA"), newCA(t, "another CA")
	writeFile(t, filepath.Join(dir, "clients-ca.pem"), ca.pem)
	const billing = "spiffe://example.com/ns/billing/sa/api"
	// default_allow: an mTLS principal has no roles, so no route's action can be granted to
	// it; it passes only paths no route matches (here /internal/...).
	cfg := `authn:
  api_keys:
    environment: live
    pepper: ${PEPPER}
    keys:
` + aliceEntry + `  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [warden]
        jwks_file: ` + jwksPath + `
        claims: {tenant: tenant, roles: roles}
  mtls:
    allow: ["spiffe://example.com/ns/billing/*"]
    gateway_roots_file: clients-ca.pem
    trust_gateway_principal: true
authz:
  default_allow: true
` + userOrdersAuthz + `      allowed_methods: [api_key, jwt]
`
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(cfg))
	r := start(t, map[string]string{"PEPPER": testPepper}, "-config", p)
	c := authv3.NewAuthorizationClient(dial(t, r.GRPC))
	keyID := strings.SplitN(strings.TrimPrefix(aliceKey, "sk-live-"), "_", 2)[0]

	t.Run("API key: allowed, identity replaces the client's", func(t *testing.T) {
		req := envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders?limit=10", Host: "api",
			Headers: [][2]string{{"x-api-key", aliceKey}, {"x-warden-subject", "mallory"}, {"x-warden-roles", "admin"}, {"x-warden-scopes", "*"}}}
		wantAllowed(t, req, extAuthz(t, c, req), map[string]string{
			"x-warden-subject": "alice", "x-warden-tenant": "acme", "x-warden-roles": "user", "x-warden-scopes": "",
			"x-warden-auth-method": "api_key", "x-warden-credential-id": keyID,
		})
	})
	t.Run("JWT: allowed", func(t *testing.T) {
		now := time.Now()
		tok := issuer.token(t, map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "bob", "tenant": "acme",
			"roles": []string{"user"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
		req := envoytest.Request{Method: "GET", Path: "/v1/users/bob/orders", Host: "api",
			Headers: [][2]string{{"authorization", "Bearer " + tok}, {"x-warden-subject", "alice"}}}
		wantAllowed(t, req, extAuthz(t, c, req), map[string]string{
			"x-warden-subject": "bob", "x-warden-tenant": "acme", "x-warden-roles": "user", "x-warden-auth-method": "jwt",
		})
	})
	t.Run("owner route: not the owner looks like a missing object", func(t *testing.T) {
		req := envoytest.Request{Method: "GET", Path: "/v1/users/bob/orders", Host: "api", Headers: [][2]string{{"x-api-key", aliceKey}}}
		wantDenied(t, req, extAuthz(t, c, req), 404, body404)
	})

	bad := aliceKey[:len(aliceKey)-1] + string("ab"[0]+(aliceKey[len(aliceKey)-1]&1))
	expired := issuer.token(t, map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "bob",
		"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})
	unauthenticated := []struct {
		name    string
		headers [][2]string
		www     string
	}{
		{"missing", nil, `Bearer realm="warden"`},
		{"mistyped API key", [][2]string{{"x-api-key", bad}}, `Bearer realm="warden", error="invalid_token"`},
		{"unknown API key", [][2]string{{"authorization", "Bearer " + otherKey(t)}}, `Bearer realm="warden", error="invalid_token"`},
		{"expired JWT", [][2]string{{"authorization", "Bearer " + expired}}, `Bearer realm="warden", error="invalid_token"`},
		{"garbage", [][2]string{{"authorization", "Basic YWxpY2U6c2VjcmV0"}}, `Bearer realm="warden", error="invalid_token"`},
	}
	for _, tt := range unauthenticated {
		t.Run("401 "+tt.name, func(t *testing.T) {
			req := envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders", Host: "api", Headers: tt.headers}
			resp := extAuthz(t, c, req)
			wantDenied(t, req, resp, 401, body401)
			if got := envoytest.ClientHeader(resp, "www-authenticate"); got != tt.www {
				t.Errorf("WWW-Authenticate: got %q, want %q", got, tt.www)
			}
			if resp.GetStatus().GetCode() != int32(codes.Unauthenticated) || resp.GetStatus().GetMessage() != codes.Unauthenticated.String() {
				t.Errorf("gRPC status: got %v, want UNAUTHENTICATED with a generic message", resp.GetStatus())
			}
		})
	}

	// Envoy sends source.principal whenever the client presented a certificate, and
	// source.certificate (the leaf only) with include_peer_certificate.
	// A caller whose certificate does not verify is not identified (401); one whose
	// authentic principal is not on the allow-list is, and is refused (403).
	mtls := []struct {
		name, principal, cert string
		status                int // 0: allowed
	}{
		{"certificate from the gateway CA", billing, ca.client(t, billing), 0},
		{"certificate from another CA", billing, otherCA.client(t, billing), 401},
		{"certificate not on the allow-list", "spiffe://example.com/ns/web/sa/api", ca.client(t, "spiffe://example.com/ns/web/sa/api"), 403},
		{"principal only, trusted gateway", billing, "", 0},
		{"principal only, not on the allow-list", "spiffe://example.com/ns/web/sa/api", "", 403},
	}
	for _, tt := range mtls {
		t.Run("mTLS "+tt.name, func(t *testing.T) {
			req := envoytest.Request{Method: "POST", Path: "/internal/invoices", Host: "api", Principal: tt.principal, Certificate: tt.cert,
				Headers: [][2]string{{"x-warden-subject", "spiffe://example.com/ns/admin/sa/root"}}}
			resp := extAuthz(t, c, req)
			switch tt.status {
			case 401:
				wantDenied(t, req, resp, 401, body401)
				return
			case 403:
				wantDenied(t, req, resp, 403, `{"status":403,"message":"forbidden"}`)
				if resp.GetStatus().GetCode() != int32(codes.PermissionDenied) || envoytest.ClientHeader(resp, "www-authenticate") != "" {
					t.Errorf("got %v, want PERMISSION_DENIED without WWW-Authenticate", resp.GetStatus())
				}
				return
			}
			wantAllowed(t, req, resp, map[string]string{
				"x-warden-subject": billing, "x-warden-auth-method": "mtls", "x-warden-tenant": "", "x-warden-roles": "",
			})
		})
	}
	t.Run("mTLS principal refused by the route's allowed_methods", func(t *testing.T) {
		// 401 (CredentialNotAllowed), not the 403 of a principal without the role.
		req := envoytest.Request{Method: "GET", Path: "/v1/users/billing/orders", Host: "api", Principal: billing, Certificate: ca.client(t, billing)}
		wantDenied(t, req, extAuthz(t, c, req), 401, body401)
	})
}

// otherKey is a well-formed API key that no store knows.
func otherKey(t *testing.T) string {
	t.Helper()
	k, _ := staticKey(t, "nobody", "user")
	return k
}

// TestEnvoyExample starts Warden from examples/envoy/warden.yaml as shipped, with the
// environment and files it names, and sends Envoy-shaped requests through it: the example
// loads, and works as its comments say.
func TestEnvoyExample(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "examples", "envoy")
	example, err := os.ReadFile(filepath.Join(src, "warden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "warden.yaml"), example)
	if err := os.Mkdir(filepath.Join(dir, "ratelimit"), 0o755); err != nil {
		t.Fatal(err)
	}
	rl, err := os.ReadFile(filepath.Join(src, "ratelimit", "edge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ratelimit", "edge.yaml"), rl)
	issuer, _ := newIssuer(t, dir) // jwks.json, beside warden.yaml
	const ghSecret = "a-github-webhook-secret-of-32-bytes!"
	r := start(t, map[string]string{"WARDEN_PEPPER": testPepper, "GITHUB_WEBHOOK_SECRET": ghSecret}, "-config", filepath.Join(dir, "warden.yaml"))
	cc := dial(t, r.GRPC)
	c := authv3.NewAuthorizationClient(cc)

	now := time.Now()
	tok := issuer.token(t, map[string]any{"iss": "https://login.example.com/", "aud": "api", "sub": "alice", "org_id": "acme",
		"roles": []string{"user"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	auth := [][2]string{{"authorization", "Bearer " + tok}, {"x-warden-subject", "mallory"}}
	mine := envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders", Host: "api", Headers: auth}
	wantAllowed(t, mine, extAuthz(t, c, mine), map[string]string{"x-warden-subject": "alice", "x-warden-tenant": "acme", "x-warden-auth-method": "jwt"})
	theirs := envoytest.Request{Method: "GET", Path: "/v1/users/bob/orders", Host: "api", Headers: auth}
	wantDenied(t, theirs, extAuthz(t, c, theirs), 404, body404)
	anon := envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders", Host: "api"}
	wantDenied(t, anon, extAuthz(t, c, anon), 401, body401)
	unknown := envoytest.Request{Method: "GET", Path: "/admin", Host: "api", Headers: auth}
	wantDenied(t, unknown, extAuthz(t, c, unknown), 404, body404)
	status := envoytest.Request{Method: "GET", Path: "/v1/status", Host: "api", Headers: [][2]string{{"x-warden-subject", "admin"}}}
	wantAllowed(t, status, extAuthz(t, c, status), map[string]string{"x-warden-subject": ""})

	body := []byte(`{"action":"opened"}`)
	hook := envoytest.Request{Method: "POST", Path: "/hooks/github", Host: "api", PackAsBytes: true, Body: body,
		Headers: [][2]string{{"x-hub-signature-256", webhook.SignGitHub(ghSecret, body)}, {"x-github-delivery", "d-1"}}}
	wantAllowed(t, hook, extAuthz(t, c, hook), nil)
	hook.Body = []byte(`{"action":"closed"}`)
	wantDenied(t, hook, extAuthz(t, c, hook), 401, body401)

	// The ratelimit filter's descriptors (envoy.yaml's rate_limits) on the domain of ratelimit/.
	rls := rlsv3.NewRateLimitServiceClient(cc)
	resp, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "10.0.0.1"}}},
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "api"}, {Key: "subject", Value: "alice"}}},
	}})
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || len(resp.GetStatuses()) != 2 ||
		resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() != 50 || resp.GetStatuses()[1].GetCurrentLimit().GetRequestsPerUnit() != 600 {
		t.Errorf("ShouldRateLimit on edge: got %v, %v; want OK under 50 per second and 600 per minute", resp, err)
	}
}
