package envoy_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/rlconfig"
	"github.com/wardenhq/warden/service"
)

const githubSecret = "a-github-webhook-secret-of-32-bytes!"

// warden builds a real Warden service as cmd/warden does (limiter on the memory store with
// the domains of testdata/ratelimit, a route table, a webhook source), and serves the Envoy
// adapters in front of it over gRPC.
func warden(t *testing.T, cfg envoy.RateLimitConfig) (authv3.AuthorizationClient, rlsv3.RateLimitServiceClient) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	domains, err := rlconfig.Load("testdata/ratelimit")
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), Domains: domains})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Compile(authz.Config{Routes: []authz.RouteConfig{
		{Name: "status", Method: "GET", Path: "/v1/status", Public: true,
			RateLimits: []authz.RateLimitConfig{{Domain: "edge", Descriptors: []authz.DescriptorConfig{{Key: "route", From: "route.name"}}}}},
		{Name: "github", Method: "POST", Path: "/hooks/github", Webhook: "github"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := webhook.New(webhook.Config{Sources: []webhook.Source{{Name: "github", Scheme: webhook.GitHub, Secrets: []string{githubSecret}}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Limiter: lim, Policy: pol, Auditor: authz.NewAuditor(quiet), Webhooks: wh}})
	return serveEnvoy(t, envoy.NewAuthServer(srv, envoy.AuthConfig{Logger: quiet}), envoy.NewRateLimitServer(srv, cfg))
}

func desc(hits *uint64, kv ...string) *commonrl.RateLimitDescriptor {
	d := &commonrl.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &commonrl.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	if hits != nil {
		d.HitsAddend = wrapperspb.UInt64(*hits)
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func TestExtAuthzEndToEnd(t *testing.T) {
	authc, _ := warden(t, envoy.RateLimitConfig{})
	ctx := context.Background()

	t.Run("rate-limited route until 429, spoofed identity removed", func(t *testing.T) {
		req := envoytest.Request{Method: "GET", Path: "/v1/status?verbose=1", Host: "api", Headers: [][2]string{{"x-warden-subject", "admin"}}}
		for i := range 3 {
			resp, err := authc.Check(ctx, req.CheckRequest())
			if err != nil {
				t.Fatal(err)
			}
			up := upstream(t, req, resp)
			if _, ok := up["x-warden-subject"]; ok {
				t.Errorf("request %d: the client's x-warden-subject reached the upstream", i)
			}
			if envoytest.ClientHeader(resp, "ratelimit") == "" {
				t.Errorf("request %d: no RateLimit header for the client", i)
			}
		}
		resp, err := authc.Check(ctx, req.CheckRequest())
		if err != nil {
			t.Fatal(err)
		}
		if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 429 || envoytest.ClientHeader(resp, "retry-after") == "" {
			t.Errorf("4th request on 3 per hour: got %v, want 429 with Retry-After", resp)
		}
	})
	t.Run("webhook", func(t *testing.T) {
		body := []byte(`{"action":"opened","number":1}`)
		sig := webhook.SignGitHub(githubSecret, body)
		good := envoytest.Request{Method: "POST", Path: "/hooks/github", Host: "api", PackAsBytes: true, Body: body,
			Headers: [][2]string{{"x-hub-signature-256", sig}, {"x-github-delivery", "d-1"}}}
		resp, err := authc.Check(ctx, good.CheckRequest())
		if err != nil || resp.GetOkResponse() == nil {
			t.Errorf("valid signature: got %v, %v; want OK", resp, err)
		}
		tampered := good
		tampered.Body = []byte(`{"action":"opened","number":2}`)
		resp, err = authc.Check(ctx, tampered.CheckRequest())
		if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
			t.Errorf("tampered body: got %v, %v; want denied 401", resp, err)
		}
	})
	t.Run("malformed path: HTTP 400 with INVALID_ARGUMENT", func(t *testing.T) {
		for _, path := range []string{"/v1/status/../admin", "/v1/%2e%2e/admin", "/v1//status"} {
			resp, err := authc.Check(ctx, envoytest.Request{Method: "GET", Path: path, Host: "api"}.CheckRequest())
			if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 400 || resp.GetStatus().GetCode() != int32(codes.InvalidArgument) {
				t.Errorf("%s: got %v, %v; want denied 400 with INVALID_ARGUMENT", path, resp, err)
			}
		}
	})
	t.Run("no route", func(t *testing.T) {
		resp, err := authc.Check(ctx, envoytest.Request{Method: "GET", Path: "/nowhere", Host: "api"}.CheckRequest())
		if err != nil || resp.GetOkResponse() != nil {
			t.Errorf("unknown path: got %v, %v; want a denial", resp, err)
		}
	})
}

func TestRateLimitServiceEndToEnd(t *testing.T) {
	ctx := context.Background()

	t.Run("exactly N of many concurrent", func(t *testing.T) {
		_, rlsc := warden(t, envoy.RateLimitConfig{})
		const n, calls = 25, 200
		var ok, over atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range calls / 8 {
					resp, err := rlsc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*commonrl.RateLimitDescriptor{desc(nil, "remote_address", "10.0.0.1")}})
					if err != nil {
						t.Error(err)
						return
					}
					if resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
						ok.Add(1)
					} else {
						over.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if ok.Load() != n || over.Load() != calls-n {
			t.Errorf("got %d admitted and %d over, want %d and %d", ok.Load(), over.Load(), n, calls-n)
		}
	})

	t.Run("statuses, hits_addend, nested, unknown", func(t *testing.T) {
		_, rlsc := warden(t, envoy.RateLimitConfig{ResponseHeaders: true})
		ask := func(hits uint32, ds ...*commonrl.RateLimitDescriptor) *rlsv3.RateLimitResponse {
			t.Helper()
			resp, err := rlsc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "messaging", HitsAddend: hits, Descriptors: ds})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetStatuses()) != len(ds) {
				t.Fatalf("got %d statuses for %d descriptors", len(resp.GetStatuses()), len(ds))
			}
			return resp
		}
		marketing := desc(nil, "message_type", "marketing", "to_number", "1")
		// Request hits_addend 0 means 1; 3 consumes 3 of the nested 5 per day.
		r := ask(0, marketing)
		st := r.GetStatuses()[0]
		if r.GetOverallCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() != 4 || st.GetCurrentLimit().GetRequestsPerUnit() != 5 ||
			st.GetCurrentLimit().GetUnit() != rlsv3.RateLimitResponse_RateLimit_DAY || st.GetDurationUntilReset().AsDuration() <= 0 {
			t.Errorf("first marketing message: got %v", r)
		}
		if r := ask(3, marketing); r.GetStatuses()[0].GetLimitRemaining() != 1 {
			t.Errorf("hits_addend 3: got remaining %d, want 1", r.GetStatuses()[0].GetLimitRemaining())
		}
		// A per-descriptor hits_addend of 0 checks without consuming.
		if r := ask(1, desc(ptr[uint64](0), "message_type", "marketing", "to_number", "1")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetLimitRemaining() != 1 {
			t.Errorf("check only: got %v, want OK with 1 left", r)
		}
		// Two descriptors, one over its limit: OVER_LIMIT overall, per-descriptor codes, and
		// both counted (a file in envoyproxy/ratelimit's format counts every hit, as it does).
		any := desc(nil, "to_number", "1")
		r = ask(2, marketing, any)
		if r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || r.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT ||
			r.GetStatuses()[1].GetCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("one of two over: got %v", r)
		}
		if !hasHeader(r, "Retry-After") || !hasHeader(r, "RateLimit-Policy") {
			t.Errorf("response_headers_to_add: got %v, want RateLimit-Policy and Retry-After", r.GetResponseHeadersToAdd())
		}
		if r := ask(1, any); r.GetStatuses()[0].GetLimitRemaining() != 97 {
			t.Errorf("to_number after the refused request: got remaining %d, want 97 (the refused request's 2 counted)", r.GetStatuses()[0].GetLimitRemaining())
		}
		// A descriptor no limit matches, and an unknown domain, answer OK as envoyproxy/ratelimit does.
		if r := ask(1, desc(nil, "message_type", "other")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetCurrentLimit() != nil {
			t.Errorf("no matching descriptor: got %v", r)
		}
		resp, err := rlsc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "nope", Descriptors: []*commonrl.RateLimitDescriptor{any, marketing}})
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || len(resp.GetStatuses()) != 2 || resp.GetStatuses()[1].GetCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("unknown domain: got %v, %v; want OK with two OK statuses", resp, err)
		}
	})

	t.Run("unlimited, shadow, ban, 30s period", func(t *testing.T) {
		_, rlsc := warden(t, envoy.RateLimitConfig{})
		one := func(ds ...*commonrl.RateLimitDescriptor) *rlsv3.RateLimitResponse {
			t.Helper()
			resp, err := rlsc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: ds})
			if err != nil {
				t.Fatal(err)
			}
			return resp
		}
		if st := one(desc(nil, "internal", "x")).GetStatuses()[0]; st.GetCode() != rlsv3.RateLimitResponse_OK || st.GetLimitRemaining() != 1<<32-1 {
			t.Errorf("unlimited: got %v, want OK with MaxUint32 remaining", st)
		}
		for range 3 {
			if r := one(desc(nil, "shadow", "x")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Errorf("shadow mode: got %v, want OK", r)
			}
		}
		if r := one(desc(nil, "remote_address", "50.0.0.5")); r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("banned address: got %v, want OVER_LIMIT", r)
		}
		st := one(desc(nil, "tenant", "t")).GetStatuses()[0].GetCurrentLimit()
		if st.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND || st.GetUnitMultiplier().GetValue() != 30 || st.GetName() != "per_tenant" {
			t.Errorf("30s period: got %v, want SECOND x 30 named per_tenant", st)
		}
	})
}

func hasHeader(r *rlsv3.RateLimitResponse, name string) bool {
	for _, h := range r.GetResponseHeadersToAdd() {
		if h.GetKey() == name {
			return true
		}
	}
	return false
}
