package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/testcred"
)

const testPepper = "a-test-pepper-of-at-least-32-bytes-0123456789"

// staticKey makes an API key and its config entry.
func staticKey(t *testing.T, owner, roles string) (key, entry string) {
	t.Helper()
	k, err := testcred.NewKey(testPepper, authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	return k.Key, "        - " + k.Entry("live", owner, "acme", roles) + "\n"
}

// jwtIssuer is a test issuer with one ES256 key, published as a JWKS file.
type jwtIssuer struct{ *testcred.Issuer }

func newIssuer(t *testing.T, dir string) (*jwtIssuer, string) {
	t.Helper()
	p := filepath.Join(dir, "jwks.json")
	is, err := testcred.NewIssuer(p)
	if err != nil {
		t.Fatal(err)
	}
	return &jwtIssuer{is}, p
}

func (is *jwtIssuer) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok, err := is.Token(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	adminKey, adminEntry := staticKey(t, "ops", "warden-admin")
	issuer, jwksPath := newIssuer(t, dir)
	cfgText := `authn:
  api_keys:
    environment: live
    pepper: ${PEPPER}
    keys:
` + adminEntry + `  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [warden]
        jwks_file: ` + jwksPath + `
        claims: {tenant: tenant, roles: roles}
authz:
` + userOrdersAuthz + `` + userOrdersPerUserLimit + `          rate_limit: {name: per_user, unit: minute, requests_per_unit: 3, algorithm: fixed_window}
`
	cfgPath := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, map[string]string{"PEPPER": testPepper}, "-config", cfgPath)
	cc := dial(t, r.GRPC)
	w := wardenv1.NewWardenServiceClient(cc)
	admin := wardenv1.NewAdminServiceClient(cc)
	ctx := context.Background()
	asAdmin := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminKey)

	// The admin creates a key for alice.
	created, err := admin.CreateApiKey(asAdmin, &wardenv1.CreateApiKeyRequest{Owner: "alice", Tenant: "acme", Roles: []string{"user"}})
	if err != nil {
		t.Fatalf("CreateApiKey: %v", err)
	}
	aliceKey := created.Secret
	check := func(path, key string) *wardenv1.CheckResponse {
		t.Helper()
		hs := map[string]string{"x-warden-subject": "mallory"}
		if key != "" {
			hs["authorization"] = "Bearer " + key
		}
		resp, err := w.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: path, Headers: hs}})
		if err != nil {
			t.Fatalf("Check %s: %v", path, err)
		}
		return resp
	}

	if r := check("/v1/users/alice/orders", aliceKey); !r.Allowed || header(r.UpstreamHeaders, "x-warden-subject") != "alice" {
		t.Fatalf("owner: got %v, want allowed with x-warden-subject alice (not the client's mallory)", r)
	}
	if r := check("/v1/users/bob/orders", aliceKey); r.Allowed || r.HttpStatus != 404 || r.Reason != wardenv1.DenyReason_DENY_REASON_NOT_OWNER {
		t.Fatalf("not owner: got %v, want 404 NOT_OWNER", r)
	}
	if r := check("/v1/users/alice/orders", ""); r.Allowed || r.HttpStatus != 401 || header(r.ResponseHeaders, "WWW-Authenticate") == "" {
		t.Fatalf("no credentials: got %v, want 401 with WWW-Authenticate", r)
	}
	bad := aliceKey[:len(aliceKey)-1] + string("ab"[0]+(aliceKey[len(aliceKey)-1]&1))
	if r := check("/v1/users/alice/orders", bad); r.Allowed || r.HttpStatus != 401 {
		t.Fatalf("mistyped key: got %v, want 401", r)
	}
	// The per-user limit of 3 a minute: two more allowed, then 429.
	for i := 0; i < 2; i++ {
		if r := check("/v1/users/alice/orders", aliceKey); !r.Allowed {
			t.Fatalf("request %d within the limit: got %v", i+2, r)
		}
	}
	if r := check("/v1/users/alice/orders", aliceKey); r.Allowed || r.HttpStatus != 429 || header(r.ResponseHeaders, "Retry-After") == "" {
		t.Fatalf("over the limit: got %v, want 429 with Retry-After", r)
	}
	// The admin reads and resets alice's counter.
	desc := []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}
	got, err := admin.GetRateLimit(asAdmin, &wardenv1.GetRateLimitRequest{Domain: "api", Descriptors: desc})
	if err != nil || len(got.Statuses) != 1 || got.Statuses[0].Remaining != 0 {
		t.Fatalf("GetRateLimit: got %v, %v; want 0 remaining", got, err)
	}
	if _, err := admin.ResetRateLimit(asAdmin, &wardenv1.ResetRateLimitRequest{Domain: "api", Descriptors: desc}); err != nil {
		t.Fatal(err)
	}
	if r := check("/v1/users/alice/orders", aliceKey); !r.Allowed {
		t.Fatalf("after reset: got %v, want allowed", r)
	}

	// Alice may not administer.
	asAlice := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+aliceKey)
	if _, err := admin.ListApiKeys(asAlice, &wardenv1.ListApiKeysRequest{Owner: "alice"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("admin call with a user key: got %v, want PERMISSION_DENIED", err)
	}
	if _, err := admin.ListApiKeys(ctx, &wardenv1.ListApiKeysRequest{Owner: "alice"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("admin call without credentials: got %v, want UNAUTHENTICATED", err)
	}
	list, err := admin.ListApiKeys(asAdmin, &wardenv1.ListApiKeysRequest{Owner: "alice"})
	if err != nil || len(list.Keys) != 1 || list.Keys[0].Id != created.Key.Id {
		t.Fatalf("ListApiKeys: got %v, %v; want alice's one key", list, err)
	}

	// Revocation takes effect at once.
	if _, err := admin.RevokeApiKey(asAdmin, &wardenv1.RevokeApiKeyRequest{Id: created.Key.Id}); err != nil {
		t.Fatal(err)
	}
	if r := check("/v1/users/alice/orders", aliceKey); r.Allowed || r.Reason != wardenv1.DenyReason_DENY_REASON_REVOKED {
		t.Fatalf("revoked key: got %v, want REVOKED", r)
	}

	// A JWT from the configured issuer authenticates; a revoked jti does not.
	now := time.Now()
	tok := issuer.token(t, map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "bob", "tenant": "acme",
		"roles": []string{"user"}, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "jti": "j-1"})
	auth, err := w.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{BearerToken: tok}})
	if err != nil || !auth.Authenticated || auth.Principal.Subject != "bob" || auth.Principal.Method != wardenv1.AuthMethod_AUTH_METHOD_JWT {
		t.Fatalf("JWT: got %v, %v; want bob by jwt", auth, err)
	}
	if r := check("/v1/users/bob/orders", tok); !r.Allowed {
		t.Fatalf("JWT owner: got %v, want allowed", r)
	}
	if _, err := admin.RevokeToken(asAdmin, &wardenv1.RevokeTokenRequest{Jti: "j-1", ExpiresAt: timestamppb.New(now.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	auth, err = w.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{BearerToken: tok}})
	if err != nil || auth.Authenticated || auth.Reason != wardenv1.DenyReason_DENY_REASON_REVOKED {
		t.Fatalf("revoked JWT: got %v, %v; want REVOKED", auth, err)
	}
	// The admin's own static key cannot be revoked through the API.
	adminID, _ := authn.ParseAPIKey(adminKey)
	if _, err := admin.RevokeApiKey(asAdmin, &wardenv1.RevokeApiKeyRequest{Id: adminID.ID}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("revoking a static key: got %v, want FAILED_PRECONDITION", err)
	}
}

func header(hs []*wardenv1.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}
