package service_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/service"
)

// TestCheckConfiguredHeaders: a deployment's identity header names replace x-warden-* (the
// client's copies of the configured names are removed, x-warden-* is an ordinary header
// then), and its rate-limit flavour chooses the headers of Check and CheckRateLimit answers.
func TestCheckConfiguredHeaders(t *testing.T) {
	ids, err := idheader.New(idheader.Config{Prefix: "x-auth-", Subject: "x-user-id"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		style          limiter.HeaderStyle
		ietf, xratelim bool
	}{
		{limiter.HeadersIETF, true, false},
		{limiter.HeadersXRateLimit, false, true},
		{limiter.HeadersBoth, true, true},
	} {
		deps := publicDeps(t, time.Now())
		deps.Headers = service.HeaderNames{Identity: ids, RateLimit: tt.style}
		c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: deps}))
		check := func() *wardenv1.CheckResponse {
			t.Helper()
			resp, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "GET", Path: "/v1/status", Headers: map[string]string{"x-client-id": "c1",
					"x-user-id": "spoofed", "x-auth-impersonate": "root", "x-warden-subject": "kept"}}})
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		r := check()
		for _, name := range []string{"x-user-id", "x-auth-impersonate", "x-auth-tenant"} {
			if !slices.Contains(r.UpstreamHeadersToRemove, name) {
				t.Errorf("%v: %s not removed (removed: %v)", tt.style, name, r.UpstreamHeadersToRemove)
			}
		}
		if slices.Contains(r.UpstreamHeadersToRemove, "x-warden-subject") {
			t.Errorf("%v: x-warden-subject removed, but the deployment's names are x-auth-*", tt.style)
		}
		if got := header(r.ResponseHeaders, "RateLimit") != ""; got != tt.ietf {
			t.Errorf("%v: RateLimit header present %v, want %v", tt.style, got, tt.ietf)
		}
		// 2 a minute, one taken: full again in 30 s (the token bucket's one token).
		want := map[string]string{"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "30"}
		for name, v := range want {
			if got := header(r.ResponseHeaders, name); (got == v) != tt.xratelim || (!tt.xratelim && got != "") {
				t.Errorf("%v: %s = %q (want %q: %v)", tt.style, name, got, v, tt.xratelim)
			}
		}
		check()
		r = check()
		if r.HttpStatus != 429 || header(r.ResponseHeaders, "Retry-After") == "" {
			t.Fatalf("%v: third request got %v, want 429 with Retry-After", tt.style, r)
		}
		if tt.xratelim && (header(r.ResponseHeaders, "X-RateLimit-Remaining") != "0" || header(r.ResponseHeaders, "X-RateLimit-Limit") != "2") {
			t.Errorf("%v: 429 headers %v, want X-RateLimit-Limit 2, -Remaining 0", tt.style, r.ResponseHeaders)
		}
		rl, err := c.CheckRateLimit(context.Background(), &wardenv1.CheckRateLimitRequest{Domain: "edge", Descriptors: []*wardenv1.RateLimitDescriptor{
			{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "route", Value: "status"}, {Key: "client", Value: "c2"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		if got := header(rl.Headers, "X-RateLimit-Remaining") == "1"; got != tt.xratelim {
			t.Errorf("%v: CheckRateLimit headers %v", tt.style, rl.Headers)
		}
	}
}

// TestAuthenticateMTLSNotListed: a caller whose certificate is authentic but whose principal
// is not on the allow-list is identified: 403, with no WWW-Authenticate; an untrusted one is
// not: 401.
func TestAuthenticateMTLSNotListed(t *testing.T) {
	m, err := authn.NewMTLS(authn.MTLSConfig{Allow: []string{"spiffe://prod.example/ns/pay/*"}, TrustGatewayPrincipal: true})
	if err != nil {
		t.Fatal(err)
	}
	au, err := authn.NewAuthenticator(authn.Config{MTLS: m})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Authn: &service.Authn{Authenticator: au}}}))
	for principal, want := range map[string]int32{
		"spiffe://prod.example/ns/pay/api": 200,
		"spiffe://prod.example/ns/ops/api": 403,
	} {
		resp, err := c.Authenticate(context.Background(), &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{PeerPrincipal: principal}})
		if err != nil {
			t.Fatal(err)
		}
		got := resp.HttpStatus
		if resp.Authenticated {
			got = 200
		}
		if got != want || (want == 403 && (header(resp.ResponseHeaders, "WWW-Authenticate") != "" || resp.Reason != wardenv1.DenyReason_DENY_REASON_PRINCIPAL_NOT_ALLOWED)) {
			t.Errorf("%s: got %v, want %d", principal, resp, want)
		}
	}
}
