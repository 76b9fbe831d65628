package envoy_test

import (
	"context"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// constChecker answers every request with the same prebuilt response, as the cheapest Checker
// possible, so that a benchmark measures the adapter alone.
type constChecker struct{ resp *wardenv1.CheckResponse }

func (c constChecker) Check(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return c.resp, nil
}

// benchRequest is a GET as Envoy's ext_authz filter sends it for an HTTP/2 client with an API
// key: pseudo-headers, the usual proxy and client headers, source and destination addresses.
func benchRequest() envoytest.Request {
	return envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders?limit=10", Host: "api.example.com",
		Headers: [][2]string{
			{"user-agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"},
			{"x-request-id", "5f0c2b8e-8c1c-4b7a-9a3e-2f6d1e0b9c41"},
			{"x-forwarded-proto", "https"},
			{"x-forwarded-for", "203.0.113.7"},
			{"x-envoy-external-address", "203.0.113.7"},
			{"accept", "application/json"},
			{"accept-encoding", "gzip, br"},
			{"accept-language", "en-GB,en;q=0.9"},
			{"authorization", "Bearer wk_live_7Hq2mX9pLr4sVt8Nw3Yz6Bc1Df5Gj0Ka"},
			{"x-envoy-expected-rq-timeout-ms", "15000"},
			{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		},
		Context: map[string]string{"policy": "public-api"},
	}
}

func benchAllowed() *wardenv1.CheckResponse {
	return &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200,
		UpstreamHeaders: []*wardenv1.Header{
			{Name: "x-warden-subject", Value: "user_alice"},
			{Name: "x-warden-tenant", Value: "acme"},
			{Name: "x-warden-roles", Value: "reader,writer"},
			{Name: "x-warden-scopes", Value: "orders:read"},
			{Name: "x-warden-auth-method", Value: "api_key"},
			{Name: "x-warden-credential-id", Value: "key_7Hq2mX9p"},
			{Name: "x-warden-tier", Value: "pro"},
		},
		ResponseHeaders: []*wardenv1.Header{
			{Name: "ratelimit-policy", Value: `"per-key";q=100;w=60`},
			{Name: "ratelimit", Value: `"per-key";r=99;t=60`},
		},
	}
}

func benchDenied() *wardenv1.CheckResponse {
	return &wardenv1.CheckResponse{Allowed: false, HttpStatus: 401, Reason: wardenv1.DenyReason_DENY_REASON_NO_CREDENTIALS,
		ResponseHeaders: []*wardenv1.Header{{Name: "www-authenticate", Value: `Bearer realm="warden"`}}}
}

func benchCheck(b *testing.B, resp *wardenv1.CheckResponse, wire bool) {
	s := envoy.NewAuthServer(constChecker{resp}, envoy.AuthConfig{})
	req := benchRequest().CheckRequest()
	raw, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	h := req.Attributes.Request.Http
	pseudo := map[string]string{}
	for k, v := range h.Headers {
		if k[0] == ':' {
			pseudo[k] = v
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r := req
		if wire {
			// What the gRPC server does around the handler: unmarshal Envoy's request and
			// marshal the answer.
			r = new(authv3.CheckRequest)
			if err := proto.Unmarshal(raw, r); err != nil {
				b.Fatal(err)
			}
		} else {
			// Envoy's map arrives fresh on each call, pseudo-headers included.
			for k, v := range pseudo {
				h.Headers[k] = v
			}
		}
		out, err := s.Check(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		if wire {
			if _, err := proto.Marshal(out); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkAuthServerCheckAllowed(b *testing.B)     { benchCheck(b, benchAllowed(), false) }
func BenchmarkAuthServerCheckDenied(b *testing.B)      { benchCheck(b, benchDenied(), false) }
func BenchmarkAuthServerCheckAllowedWire(b *testing.B) { benchCheck(b, benchAllowed(), true) }
func BenchmarkAuthServerCheckDeniedWire(b *testing.B)  { benchCheck(b, benchDenied(), true) }

// TestAuthServerCheckAllocs guards the adapter's allocations per decision, Warden's own
// decision aside (a constant Checker): the call's one block (Warden's request and Envoy's
// answer with the header options of an allow: 3 allocations before they joined it), plus a
// denial's parts and header list.
func TestAuthServerCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for _, tc := range []struct {
		name string
		resp *wardenv1.CheckResponse
		max  float64
	}{
		{"allowed with 9 headers", benchAllowed(), 1},
		{"denied", benchDenied(), 4},
	} {
		s := envoy.NewAuthServer(constChecker{tc.resp}, envoy.AuthConfig{})
		req := benchRequest().CheckRequest()
		h := req.Attributes.Request.Http
		pseudo := map[string]string{}
		for k, v := range h.Headers {
			if k[0] == ':' {
				pseudo[k] = v
			}
		}
		ctx := context.Background()
		got := testing.AllocsPerRun(200, func() {
			for k, v := range pseudo {
				h.Headers[k] = v
			}
			if _, err := s.Check(ctx, req); err != nil {
				t.Fatal(err)
			}
		})
		if got > tc.max {
			t.Errorf("%s: got %v allocations per Check, want at most %v", tc.name, got, tc.max)
		}
	}
}

// rlsConvRequest is a request of Envoy's rate limit filter as bench/ sends it: one descriptor
// of one entry; rlsConvResponse is Warden's answer to it, allowed, with one status.
func rlsConvRequest() *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*commonrl.RateLimitDescriptor{
		{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: "user-42"}}}}}
}

func rlsConvResponse() *wardenv1.CheckRateLimitResponse {
	return &wardenv1.CheckRateLimitResponse{Allowed: true, Statuses: []*wardenv1.RateLimitStatus{{
		Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK, Limit: 100, Remaining: 99,
		ResetAfter: durationpb.New(time.Second), Window: durationpb.New(time.Second)}}}
}

// TestRateLimitConversionAllocs guards the RLS adapter's allocations per decision in the
// common case (one descriptor, a few entries, one status): one for Warden's request and one
// for Envoy's response, each with its parts (before: 6 and 5).
func TestRateLimitConversionAllocs(t *testing.T) {
	req, resp := rlsConvRequest(), rlsConvResponse()
	got := testing.AllocsPerRun(1000, func() {
		if _, err := envoy.RateLimitRequestFromEnvoy(req); err != nil {
			t.Fatal(err)
		}
		envoy.RateLimitResponseToEnvoy(resp, 1, false)
	})
	if got > 2 {
		t.Errorf("got %v allocations per conversion, want at most 2", got)
	}
}

// BenchmarkRateLimitConversion is the RLS adapter's own work per decision: Envoy's request
// to Warden's, Warden's answer to Envoy's.
func BenchmarkRateLimitConversion(b *testing.B) {
	req, resp := rlsConvRequest(), rlsConvResponse()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := envoy.RateLimitRequestFromEnvoy(req); err != nil {
			b.Fatal(err)
		}
		envoy.RateLimitResponseToEnvoy(resp, 1, false)
	}
}
