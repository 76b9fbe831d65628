package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// The secrets TestGatewayExample gives examples/gateway/warden.yaml. ciKey's digest under
// gatewayPepper is the one the example lists.
const (
	gatewayPepper = "an-example-pepper-that-is-long-enough-0123456789"
	opsKey        = "acme_live_ops9Vd3Kq7Wm2Xr5Ty8Zb1Nc4Lp6Hg0F"
	ciKey         = "acme_test_ci7Hq2Zr9Lw4Tn6Vb8Xm1Pk3Sd5Fg0Jh"
	partnerSecret = "a-partner-webhook-secret-of-32-bytes"
)

// gatewayDecision is one answer seen both ways: through ext_authz (as Envoy asks) and through
// Check (as a service asks), for the same request.
type gatewayDecision struct {
	ext   *authv3.CheckResponse
	check *wardenv1.CheckResponse
}

// TestGatewayExample starts Warden from examples/gateway/warden.yaml as shipped (an outside
// issuer with plain scopes, imported keys of a foreign format in both environments, an mTLS
// allow-list, prefix routes, X-RateLimit-* headers, configured identity header names) and
// drives every decision through ext_authz and through Check: allowed, 400, 401, 403, 404, 429
// with the configured headers, and a replayed webhook's 409.
func TestGatewayExample(t *testing.T) {
	dir := t.TempDir()
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "gateway", "warden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "warden.yaml"), example)
	issuer, _ := newIssuer(t, dir) // jwks.json beside warden.yaml, as the example names it
	r := start(t, map[string]string{"WARDEN_PEPPER": gatewayPepper, "OPS_API_KEY": opsKey, "PARTNER_WEBHOOK_SECRET": partnerSecret},
		"-config", filepath.Join(dir, "warden.yaml"))
	cc := dial(t, r.GRPC)
	ext := authv3.NewAuthorizationClient(cc)
	w := wardenv1.NewWardenServiceClient(cc)
	ctx := context.Background()

	// The platform team imports two customers' existing keys, one per environment, with its
	// own (static, imported) key.
	bobKey, carolKey := "acme_live_bob4Rt7Yu1Io3Pa6Sd9Fg2Hj5Kl8Zx0C", "acme_test_car2Wq5Er8Ty1Ui4Op7As0Df3Gh6Jk9L"
	admin := wardenv1.NewAdminServiceClient(cc)
	imp, err := admin.ImportApiKey(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+opsKey), &wardenv1.ImportApiKeyRequest{Keys: []*wardenv1.ImportedApiKey{
		{Key: bobKey, Owner: "bob", Tenant: "acme", Scopes: []string{"read"}},
		{Key: carolKey, Owner: "carol", Tenant: "acme", Scopes: []string{"read"}},
		{Key: "sk-live-not-a-foreign-key", Owner: "x"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if res := imp.GetResults(); len(res) != 3 || res[0].GetKey().GetEnvironment() != wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_LIVE ||
		res[1].GetKey().GetEnvironment() != wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_TEST || !res[1].GetKey().GetImported() || res[2].GetError() == "" {
		t.Fatalf("ImportApiKey: got %v, want a live and a test key imported and the third refused", res)
	}

	now := time.Now()
	jwt := func(sub, scope string) string {
		return issuer.token(t, map[string]any{"iss": "https://id.partner.example/", "aud": "gateway", "sub": sub, "org_id": "acme",
			"scope": scope, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()})
	}
	bearer := func(tok string) [][2]string { return [][2]string{{"authorization", "Bearer " + tok}} }
	decide := func(req envoytest.Request) gatewayDecision {
		t.Helper()
		e := extAuthz(t, ext, req)
		c, err := w.Check(ctx, envoy.CheckRequestFromEnvoy(req.CheckRequest()))
		if err != nil {
			t.Fatalf("Check %s %s: %v", req.Method, req.Path, err)
		}
		return gatewayDecision{e, c}
	}
	denied := func(name string, d gatewayDecision, status int32, code codes.Code) {
		t.Helper()
		if dr := d.ext.GetDeniedResponse(); dr == nil || int32(dr.GetStatus().GetCode()) != status || d.ext.GetStatus().GetCode() != int32(code) {
			t.Errorf("%s, ext_authz: got %v, want denied %d with %v", name, d.ext, status, code)
		}
		if d.check.GetAllowed() || d.check.GetHttpStatus() != status {
			t.Errorf("%s, Check: got %v, want denied %d", name, d.check, status)
		}
	}
	allowed := func(name string, d gatewayDecision, req envoytest.Request, subject, roles, env string) {
		t.Helper()
		if d.ext.GetStatus().GetCode() != int32(codes.OK) || !d.check.GetAllowed() {
			t.Fatalf("%s: got %v and %v, want allowed both ways", name, d.ext, d.check)
		}
		wantAllowed(t, req, d.ext, map[string]string{"x-user-id": subject, "x-auth-roles": roles, "x-warden-subject": "not-reserved-here"})
		if got := header(d.check.GetUpstreamHeaders(), "x-user-id"); got != subject {
			t.Errorf("%s, Check: x-user-id %q, want %q", name, got, subject)
		}
		if got := d.check.GetPrincipal().GetEnvironment(); got != env {
			t.Errorf("%s, Check: principal environment %q, want %q", name, got, env)
		}
	}
	// Every request also carries a client's forged identity headers.
	forged := [][2]string{{"x-user-id", "mallory"}, {"x-auth-roles", "admin"}, {"x-warden-subject", "not-reserved-here"}}
	req := func(method, path string, hs [][2]string) envoytest.Request {
		return envoytest.Request{Method: method, Path: path, Host: "api.example.com", Headers: append(append([][2]string{}, hs...), forged...)}
	}

	// Allowed: a partner JWT with plain scopes, imported keys of both environments (static and
	// imported through the API), an internal service on the mTLS allow-list.
	for _, tt := range []struct {
		name, subject, roles, env string
		req                       envoytest.Request
	}{
		{"partner JWT, scope read", "alice", "", "", req("GET", "/api/orders?page=2", bearer(jwt("alice", "read write")))},
		{"imported live key, bare prefix", "bob", "", "live", req("GET", "/api", [][2]string{{"x-api-key", bobKey}})},
		{"imported test key as a bearer token", "carol", "", "test", req("GET", "/api/orders", bearer(carolKey))},
		{"static test key, by digest", "ci-bot", "", "test", req("HEAD", "/api/orders", [][2]string{{"x-api-key", ciKey}})},
		{"static live key, by secret reference, writes", "ops", "warden-admin", "live", req("POST", "/api/orders", [][2]string{{"x-api-key", opsKey}})},
	} {
		d := decide(tt.req)
		allowed(tt.name, d, tt.req, tt.subject, tt.roles, tt.env)
		if got := envoytest.ClientHeader(d.ext, "x-ratelimit-limit"); got != "5" {
			t.Errorf("%s: X-RateLimit-Limit %q to the client, want 5", tt.name, got)
		}
	}
	internal := envoytest.Request{Method: "GET", Path: "/internal/ledger", Host: "api.example.com", Principal: "spiffe://prod.example.com/ns/payments/billing", Headers: forged}
	d := decide(internal)
	if d.ext.GetStatus().GetCode() != int32(codes.OK) || !d.check.GetAllowed() || d.check.GetPrincipal().GetTenant() != "payments" {
		t.Errorf("mTLS principal on the allow-list: got %v and %v, want allowed for tenant payments", d.ext, d.check)
	}

	// Denied, the same way through both.
	for _, tt := range []struct {
		name   string
		req    envoytest.Request
		status int32
		code   codes.Code
	}{
		{"no credentials", req("GET", "/api/orders", nil), 401, codes.Unauthenticated},
		{"unknown key of the imported format", req("GET", "/api/orders", [][2]string{{"x-api-key", "acme_live_" + "unknown0unknown0unknown0unknown0"}}), 401, codes.Unauthenticated},
		{"scope read only, on a write", req("POST", "/api/orders", bearer(jwt("dave", "read"))), 403, codes.PermissionDenied},
		{"scopes are case-sensitive", req("GET", "/api/orders", bearer(jwt("erin", "Read"))), 403, codes.PermissionDenied},
		{"identified mTLS principal, not on the allow-list", envoytest.Request{Method: "GET", Path: "/internal/ledger", Host: "api.example.com",
			Principal: "spiffe://prod.example.com/ns/marketing/crawler"}, 403, codes.PermissionDenied},
		{"no route", req("GET", "/admin", bearer(jwt("frank", "read"))), 404, codes.PermissionDenied},
		{"malformed path", req("GET", "/api/../admin", bearer(jwt("grace", "read"))), 400, codes.InvalidArgument},
	} {
		denied(tt.name, decide(tt.req), tt.status, tt.code)
	}

	// 429 with the X-RateLimit-* headers (not the IETF ones), through ext_authz then Check.
	burst := req("GET", "/api/orders", bearer(jwt("heidi", "read")))
	for i := range 5 {
		if resp := extAuthz(t, ext, burst); resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Fatalf("request %d of 5: got %v, want allowed", i+1, resp)
		}
	}
	d = decide(burst)
	denied("over the limit", d, 429, codes.ResourceExhausted)
	for name, want := range map[string]string{"x-ratelimit-limit": "5", "x-ratelimit-remaining": "0", "ratelimit": "", "ratelimit-policy": ""} {
		if got := envoytest.ClientHeader(d.ext, name); got != want {
			t.Errorf("429, ext_authz: %s %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"x-ratelimit-reset", "retry-after"} {
		if n, err := strconv.Atoi(envoytest.ClientHeader(d.ext, name)); err != nil || n < 1 || n > 60 {
			t.Errorf("429, ext_authz: %s %q, want 1..60 seconds", name, envoytest.ClientHeader(d.ext, name))
		}
	}
	if header(d.check.GetResponseHeaders(), "X-RateLimit-Remaining") != "0" || header(d.check.GetResponseHeaders(), "Retry-After") == "" {
		t.Errorf("429, Check: headers %v, want X-RateLimit-Remaining 0 and Retry-After", d.check.GetResponseHeaders())
	}

	// A webhook delivered twice: the replay is 409 (ALREADY_EXISTS through ext_authz).
	body := []byte(`{"event":"invoice.paid"}`)
	hook := envoytest.Request{Method: "POST", Path: "/hooks/partner", Host: "api.example.com", Body: body, PackAsBytes: true,
		Headers: [][2]string{{"x-hub-signature-256", webhook.SignGitHub(partnerSecret, body)}, {"x-github-delivery", "evt-1"}}}
	if resp := extAuthz(t, ext, hook); resp.GetStatus().GetCode() != int32(codes.OK) {
		t.Fatalf("first delivery: got %v, want allowed", resp)
	}
	denied("replayed delivery", decide(hook), 409, codes.AlreadyExists)
}

// TestGatewayConfigErrors: the settings the gateway example uses refuse bad values with the
// field's name, and Warden does not start.
func TestGatewayConfigErrors(t *testing.T) {
	const apiKeys = "authn:\n  api_keys:\n    environment: live\n    pepper: ${WARDEN_PEPPER}\n"
	for _, tt := range []struct{ name, config, field string }{
		{"rate-limit header flavour", "rate_limit:\n  headers: X-RateLimit\n", "rate_limit.headers"},
		{"identity header name", apiKeys + "  identity_headers: {subject: \"x user\"}\n", "authn.identity_headers.subject"},
		{"two identity headers of one name", apiKeys + "  identity_headers: {subject: x-id, tenant: X-ID}\n", "authn.identity_headers.tenant"},
		{"webhook replay status", "webhooks:\n  replay_status: 202\n  sources: [{name: gh, scheme: github, secrets: [\"${SECRET}\"]}]\n", "webhooks.replay_status"},
		{"imported key of no format", apiKeys + "    imported_keys: [{key: \"${SECRET}\", owner: x}]\n", "authn.api_keys.imported_keys[0].key"},
		{"imported key of the other environment", apiKeys + "    imported_formats: [{prefix: acme_, environment: live}]\n    imported_keys: [{key: \"${SECRET}\", environment: test, owner: x}]\n",
			"authn.api_keys.imported_keys[0].key"},
		{"imported key with a bad digest", apiKeys + "    imported_keys: [{digest: " + strings.Repeat("ab", 32) + ", environment: live, owner: x}, {digest: zz, environment: live, owner: y}]\n",
			"authn.api_keys.imported_keys[1].digest"},
	} {
		p := filepath.Join(t.TempDir(), "w.yaml")
		writeFile(t, p, []byte(tt.config))
		env := func(k string) (string, bool) {
			v, ok := map[string]string{"WARDEN_PEPPER": gatewayPepper, "SECRET": "acme_0123456789abcdef0123456789abcdef"}[k]
			return v, ok
		}
		err := run(context.Background(), []string{"-config", p}, env, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), " "+tt.field+": ") {
			t.Errorf("%s: got %v, want an error naming %s", tt.name, err, tt.field)
		}
	}
}
