package envoy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authz"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/service"
)

// downStore is a rate-limit store that cannot answer.
type downStore struct{}

func (downStore) Take(context.Context, string, []limiter.Hit, []limiter.Status) (bool, error) {
	return false, errors.New("connection refused")
}

// downWarden is a real Warden whose rate-limit store is down, with one domain per failure
// policy ("closed", "open", "local": 8 per hour on "user", 4 replicas) and a public route
// limited in "closed", behind the Envoy adapters.
func downWarden(t *testing.T, rls envoy.RateLimitConfig, auth envoy.AuthConfig) (authv3.AuthorizationClient, rlsv3.RateLimitServiceClient) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var domains []limiter.Domain
	for name, p := range map[string]limiter.FailurePolicy{"closed": limiter.FailClosed, "open": limiter.FailOpen, "local": limiter.Local} {
		domains = append(domains, limiter.Domain{Name: name, FailurePolicy: p, Descriptors: []limiter.Descriptor{
			{Key: "user", RateLimit: &limiter.RateLimit{Name: "per_user", Unit: "hour", RequestsPerUnit: 8}}}})
	}
	lim, err := limiter.New(limiter.Config{Store: downStore{}, Fallback: memstore.New(memstore.Options{}), Replicas: 4,
		Domains: domains, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Compile(authz.Config{Routes: []authz.RouteConfig{
		{Name: "status", Method: "GET", Path: "/v1/status", Public: true,
			RateLimits: []authz.RateLimitConfig{{Domain: "closed", Descriptors: []authz.DescriptorConfig{{Key: "user", From: "header.x-user"}}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Limiter: lim, Policy: pol, Auditor: authz.NewAuditor(quiet)}})
	auth.Logger = quiet
	return serveEnvoy(t, envoy.NewAuthServer(srv, auth), envoy.NewRateLimitServer(srv, rls))
}

func rlsHeader(resp *rlsv3.RateLimitResponse, name string) (string, int) {
	v, n := "", 0
	for _, h := range resp.GetResponseHeadersToAdd() {
		if h.GetKey() == name {
			v, n = h.GetValue(), n+1
		}
	}
	return v, n
}

// TestRateLimitStoreUnavailable: with the store down, ShouldRateLimit answers each domain's
// failure policy as a decision, never an RPC error (which Envoy allows by default):
// fail_closed OVER_LIMIT for the limited descriptor (not for one no limit matches), with
// Retry-After and the store-unavailable header and metadata; fail_open OK; local the
// per-replica share (ceil(8/4) = 2). UnavailableAsError brings the error back.
func TestRateLimitStoreUnavailable(t *testing.T) {
	ctx := context.Background()
	req := func(domain string) *rlsv3.RateLimitRequest {
		return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*commonrl.RateLimitDescriptor{desc(nil, "user", "u1"), desc(nil, "other", "x")}}
	}
	for _, headers := range []bool{false, true} {
		_, rlsc := downWarden(t, envoy.RateLimitConfig{ResponseHeaders: headers}, envoy.AuthConfig{})
		for i := range 5 { // through the breaker's opening
			resp, err := rlsc.ShouldRateLimit(ctx, req("closed"))
			if err != nil {
				t.Fatalf("fail_closed, headers %v, call %d: got %v, want a decision", headers, i, err)
			}
			st := resp.GetStatuses()
			if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || len(st) != 2 ||
				st[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT || st[1].GetCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("fail_closed, headers %v, call %d: got %v, want OVER_LIMIT for the limited descriptor only", headers, i, resp)
			}
			if v, n := rlsHeader(resp, "Retry-After"); v != "1" || n != 1 {
				t.Errorf("fail_closed, headers %v: Retry-After %q (%d times), want one, 1", headers, v, n)
			}
			if v, _ := rlsHeader(resp, envoy.HeaderStoreUnavailable); v != "store-unavailable" {
				t.Errorf("fail_closed, headers %v: %s = %q, want store-unavailable", headers, envoy.HeaderStoreUnavailable, v)
			}
			if !resp.GetDynamicMetadata().GetFields()[envoy.MetadataStoreUnavailable].GetBoolValue() {
				t.Errorf("fail_closed: dynamic metadata %v, want %s true", resp.GetDynamicMetadata(), envoy.MetadataStoreUnavailable)
			}
		}
		for i := range 5 {
			resp, err := rlsc.ShouldRateLimit(ctx, req("open"))
			if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("fail_open, call %d: got %v, %v, want OK", i, resp, err)
			}
			if _, n := rlsHeader(resp, envoy.HeaderStoreUnavailable); n != 0 || !resp.GetDynamicMetadata().GetFields()[envoy.MetadataStoreUnavailable].GetBoolValue() {
				t.Errorf("fail_open: got %v, want the metadata but not the refusal's header", resp)
			}
		}
	}
	_, rlsc := downWarden(t, envoy.RateLimitConfig{}, envoy.AuthConfig{})
	ok := 0
	for i := range 6 {
		resp, err := rlsc.ShouldRateLimit(ctx, req("local"))
		if err != nil {
			t.Fatalf("local, call %d: %v", i, err)
		}
		if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
			ok++
		}
	}
	if ok != 2 {
		t.Errorf("local: %d of 6 allowed, want this replica's share, ceil(8/4) = 2", ok)
	}

	// Beside envoyproxy/ratelimit's dynamic metadata; and shadow_mode answers OK, unmarked
	// as a refusal.
	_, rlsc = downWarden(t, envoy.RateLimitConfig{DynamicMetadata: true, ShadowMode: true}, envoy.AuthConfig{})
	resp, err := rlsc.ShouldRateLimit(ctx, req("closed"))
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("shadow_mode: got %v, %v, want OK", resp, err)
	}
	if f := resp.GetDynamicMetadata().GetFields(); !f[envoy.MetadataStoreUnavailable].GetBoolValue() || f["domain"].GetStringValue() != "closed" {
		t.Errorf("dynamic_metadata on: got %v, want the domain and %s", resp.GetDynamicMetadata(), envoy.MetadataStoreUnavailable)
	}
	if _, n := rlsHeader(resp, envoy.HeaderStoreUnavailable); n != 0 {
		t.Errorf("shadow_mode: the refusal's header on an OK answer: %v", resp)
	}

	_, rlsc = downWarden(t, envoy.RateLimitConfig{UnavailableAsError: true}, envoy.AuthConfig{})
	if _, err := rlsc.ShouldRateLimit(ctx, req("closed")); status.Code(err) != codes.Unavailable {
		t.Errorf("unavailable: error: got %v, want UNAVAILABLE", err)
	}
}

// TestExtAuthzStoreUnavailable: a route limited in a fail_closed domain whose store is down
// gets a 503 denial with Retry-After in every failure mode but error (where Envoy decides);
// with failure_mode open too, since Warden did decide: the store could not count.
func TestExtAuthzStoreUnavailable(t *testing.T) {
	r := envoytest.Request{Method: "GET", Path: "/v1/status", Host: "h", Headers: [][2]string{{"x-user", "u1"}}}
	for _, mode := range []envoy.FailureMode{envoy.FailClosed, envoy.FailOpen} {
		authc, _ := downWarden(t, envoy.RateLimitConfig{}, envoy.AuthConfig{FailureMode: mode})
		for i := range 5 {
			resp, err := authc.Check(context.Background(), r.CheckRequest())
			if err != nil {
				t.Fatalf("%v, call %d: got %v, want a 503 denial", mode, i, err)
			}
			d := resp.GetDeniedResponse()
			if d.GetStatus().GetCode() != 503 || codes.Code(resp.GetStatus().GetCode()) != codes.Unavailable {
				t.Fatalf("%v, call %d: got %v, want a 503 denial", mode, i, resp)
			}
			n := 0
			for _, h := range d.GetHeaders() {
				if h.GetHeader().GetKey() == "Retry-After" || h.GetHeader().GetKey() == "retry-after" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%v: %d Retry-After headers, want 1: %v", mode, n, d.GetHeaders())
			}
		}
	}
	authc, _ := downWarden(t, envoy.RateLimitConfig{}, envoy.AuthConfig{FailureMode: envoy.FailError})
	if _, err := authc.Check(context.Background(), r.CheckRequest()); status.Code(err) != codes.Unavailable {
		t.Errorf("failure_mode error: got %v, want UNAVAILABLE", err)
	}
}
