package envoy_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// fakeChecker is a small stand-in for Warden's Check, for the mapping only: it records what it
// was asked and decides by a function. End-to-end behaviour is tested against the real
// service in e2e_test.go.
type fakeChecker struct {
	mu     sync.Mutex
	got    []*wardenv1.CheckRequest
	decide func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error)
}

func (f *fakeChecker) Check(_ context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	f.mu.Lock()
	f.got = append(f.got, req)
	f.mu.Unlock()
	return f.decide(req)
}

func (f *fakeChecker) last() *wardenv1.CheckRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.got[len(f.got)-1]
}

func allow(req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200}, nil
}

func TestCheckRequestMapping(t *testing.T) {
	f := &fakeChecker{decide: allow}
	authc, _ := serveEnvoy(t, envoy.NewAuthServer(f, envoy.AuthConfig{}), nil)
	body := []byte(`{"id":"evt_1","amount":10}`)
	tests := []struct {
		name string
		req  envoytest.Request
		want *wardenv1.CheckRequest
	}{
		{
			name: "headers map, query split off, repeated header joined",
			req: envoytest.Request{Method: "GET", Path: "/v1/users/alice/orders?limit=10&x=%2F", Host: "api.example.com",
				Headers: [][2]string{{"authorization", "Bearer t"}, {"x-api-key", "sk-live-1"}, {"accept", "a/b"}, {"accept", "c/d"}},
				Context: map[string]string{"policy": "public-api"}},
			want: &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "GET", Path: "/v1/users/alice/orders", Host: "api.example.com",
				Headers: map[string]string{"authorization": "Bearer t", "x-api-key": "sk-live-1", "accept": "a/b,c/d"},
				Context: map[string]string{"policy": "public-api"},
			}},
		},
		{
			name: "raw header map and raw body",
			req: envoytest.Request{Method: "POST", Path: "/hooks/stripe", Host: "api.example.com", RawHeaders: true, PackAsBytes: true,
				Headers: [][2]string{{"Stripe-Signature", "t=1,v1=ab"}, {"x-a", "1"}, {"x-a", "2"}}, Body: body},
			want: &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "POST", Path: "/hooks/stripe", Host: "api.example.com",
				Headers: map[string]string{"stripe-signature": "t=1,v1=ab", "x-a": "1,2", "x-envoy-auth-partial-body": "false"},
				Body:    body,
			}},
		},
		{
			name: "string body",
			req:  envoytest.Request{Method: "POST", Path: "/hooks/github", Host: "h", Body: body},
			want: &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
				Method: "POST", Path: "/hooks/github", Host: "h", Body: body,
				Headers: map[string]string{"x-envoy-auth-partial-body": "false"},
			}},
		},
		{
			name: "mTLS peer",
			req: envoytest.Request{Method: "GET", Path: "/v1/internal", Host: "h", Principal: "spiffe://example.org/ns/prod/sa/billing",
				Certificate: "-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A"},
			want: &wardenv1.CheckRequest{
				Credentials: &wardenv1.Credentials{
					Headers:         map[string]string{},
					PeerPrincipal:   "spiffe://example.org/ns/prod/sa/billing",
					PeerCertificate: "-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A",
				},
				Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/internal", Host: "h", Headers: map[string]string{}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := authc.Check(context.Background(), tt.req.CheckRequest())
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetOkResponse() == nil {
				t.Fatalf("got %v, want OK", resp)
			}
			if diff := cmp.Diff(tt.want, f.last(), protocmp.Transform()); diff != "" {
				t.Errorf("Warden request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckResponseMapping(t *testing.T) {
	var decision *wardenv1.CheckResponse
	f := &fakeChecker{decide: func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) { return decision, nil }}
	authc, _ := serveEnvoy(t, envoy.NewAuthServer(f, envoy.AuthConfig{}), nil)
	req := envoytest.Request{Method: "GET", Path: "/v1/users/alice", Host: "h",
		Headers: [][2]string{{"x-api-key", "sk-live-secret"}, {"x-warden-subject", "admin"}, {"x-warden-roles", "admin"}, {"x-request-id", "r1"}}}

	t.Run("allowed: identity headers replace the client's", func(t *testing.T) {
		decision = &wardenv1.CheckResponse{
			Allowed: true, HttpStatus: 200,
			UpstreamHeaders:         []*wardenv1.Header{{Name: "x-warden-subject", Value: "alice"}, {Name: "x-warden-tenant", Value: "acme"}},
			UpstreamHeadersToRemove: []string{"x-warden-roles", "x-api-key"},
			ResponseHeaders:         []*wardenv1.Header{{Name: "RateLimit", Value: `"r";r=9;t=1`}},
		}
		resp, err := authc.Check(context.Background(), req.CheckRequest())
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			t.Errorf("got status %v, want OK", resp.GetStatus())
		}
		want := map[string][]string{"x-warden-subject": {"alice"}, "x-warden-tenant": {"acme"}, "x-request-id": {"r1"}}
		if diff := cmp.Diff(want, upstream(t, req, resp)); diff != "" {
			t.Errorf("upstream headers (-want +got):\n%s", diff)
		}
		if got := envoytest.ClientHeader(resp, "ratelimit"); got != `"r";r=9;t=1` {
			t.Errorf("RateLimit to the client: got %q", got)
		}
	})

	denials := []struct {
		name       string
		decision   *wardenv1.CheckResponse
		code       codes.Code
		httpStatus int32
		header     [2]string
	}{
		{"401", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE, Reason: wardenv1.DenyReason_DENY_REASON_EXPIRED, HttpStatus: 401,
			ResponseHeaders: []*wardenv1.Header{{Name: "WWW-Authenticate", Value: `Bearer realm="warden", error="invalid_token"`}}},
			codes.Unauthenticated, 401, [2]string{"www-authenticate", `Bearer realm="warden", error="invalid_token"`}},
		{"403", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, Reason: wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, HttpStatus: 403},
			codes.PermissionDenied, 403, [2]string{"content-type", "application/json"}},
		{"404 not owner", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, Reason: wardenv1.DenyReason_DENY_REASON_NOT_OWNER, HttpStatus: 404},
			codes.PermissionDenied, 404, [2]string{"content-type", "application/json"}},
		{"400 malformed path", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, Reason: wardenv1.DenyReason_DENY_REASON_MALFORMED_REQUEST, HttpStatus: 400},
			codes.InvalidArgument, 400, [2]string{"content-type", "application/json"}},
		{"429", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT, Reason: wardenv1.DenyReason_DENY_REASON_RATE_LIMITED, HttpStatus: 429,
			ResponseHeaders: []*wardenv1.Header{{Name: "RateLimit-Policy", Value: `"r";q=10;w=1`}, {Name: "Retry-After", Value: "1"}}},
			codes.ResourceExhausted, 429, [2]string{"retry-after", "1"}},
		{"403 mTLS principal not on the allow-list", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE, Reason: wardenv1.DenyReason_DENY_REASON_PRINCIPAL_NOT_ALLOWED, HttpStatus: 403},
			codes.PermissionDenied, 403, [2]string{"content-type", "application/json"}},
		{"409 webhook replay", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_WEBHOOK, Reason: wardenv1.DenyReason_DENY_REASON_DUPLICATE, HttpStatus: 409},
			codes.AlreadyExists, 409, [2]string{"content-type", "application/json"}},
		{"200 webhook replay (replay_status: 200)", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_WEBHOOK, Reason: wardenv1.DenyReason_DENY_REASON_DUPLICATE, HttpStatus: 200},
			codes.AlreadyExists, 200, [2]string{"content-type", "application/json"}},
	}
	for _, tt := range denials {
		t.Run("denied "+tt.name, func(t *testing.T) {
			decision = tt.decision
			resp, err := authc.Check(context.Background(), req.CheckRequest())
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeniedResponse()
			if resp.GetStatus().GetCode() != int32(tt.code) || d == nil || int32(d.GetStatus().GetCode()) != tt.httpStatus {
				t.Fatalf("got %v, want %v with HTTP %d", resp, tt.code, tt.httpStatus)
			}
			if got := envoytest.ClientHeader(resp, tt.header[0]); got != tt.header[1] {
				t.Errorf("%s: got %q, want %q", tt.header[0], got, tt.header[1])
			}
			if reason := strings.ToLower(tt.decision.GetReason().String()); strings.Contains(strings.ToLower(d.GetBody()), strings.TrimPrefix(reason, "deny_reason_")) {
				t.Errorf("body %q gives the reason away", d.GetBody())
			}
			if !strings.HasPrefix(d.GetBody(), `{"status":`) {
				t.Errorf("body %q: want a small JSON object", d.GetBody())
			}
		})
	}
}

func TestFailureModes(t *testing.T) {
	var logs bytes.Buffer
	var fail error
	f := &fakeChecker{decide: func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) { return nil, fail }}
	srv := envoy.NewAuthServer(f, envoy.AuthConfig{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	authc, _ := serveEnvoy(t, srv, nil)
	spoof := envoytest.Request{Method: "GET", Path: "/x", Host: "h", Headers: [][2]string{{"x-warden-subject", "admin"}, {"x-warden-tier", "paid"}}}
	openRoute := spoof
	openRoute.Context = map[string]string{envoy.ContextKeyFailureMode: "open"}
	closedRoute := spoof
	closedRoute.Context = map[string]string{envoy.ContextKeyFailureMode: "closed"}

	check := func(t *testing.T, r envoytest.Request) *authv3.CheckResponse {
		t.Helper()
		resp, err := authc.Check(context.Background(), r.CheckRequest())
		if err != nil {
			t.Fatalf("got error %v, want an answer", err)
		}
		return resp
	}
	wantDenied := func(t *testing.T, resp *authv3.CheckResponse, httpStatus int32) {
		t.Helper()
		if d := resp.GetDeniedResponse(); d == nil || int32(d.GetStatus().GetCode()) != httpStatus {
			t.Errorf("got %v, want denied %d", resp, httpStatus)
		}
	}
	wantOpen := func(t *testing.T, r envoytest.Request, resp *authv3.CheckResponse) {
		t.Helper()
		up := upstream(t, r, resp)
		if _, ok := up["x-warden-subject"]; ok {
			t.Errorf("fail-open kept the client's x-warden-subject: %v", up)
		}
		if _, ok := up["x-warden-tier"]; ok {
			t.Errorf("fail-open kept the client's x-warden-tier: %v", up)
		}
		if got := up["x-envoy-auth-failure-mode-allowed"]; len(got) != 1 || got[0] != "true" {
			t.Errorf("x-envoy-auth-failure-mode-allowed: got %v, want true", got)
		}
	}

	fail = status.Error(codes.Unavailable, "redis down")
	wantDenied(t, check(t, spoof), 503)
	wantOpen(t, openRoute, check(t, openRoute))

	srv.SetConfig(envoy.AuthConfig{FailureMode: envoy.FailOpen})
	wantOpen(t, spoof, check(t, spoof))
	wantDenied(t, check(t, closedRoute), 503)

	fail = status.Error(codes.InvalidArgument, "http.path: required")
	wantDenied(t, check(t, openRoute), 400)

	// A Warden with no route table never fails open: that is a configuration mistake, not
	// an outage.
	fail = status.Error(codes.Unimplemented, "Check: no route table is configured")
	wantDenied(t, check(t, openRoute), 503)
	wantDenied(t, check(t, spoof), 503)

	// failure_mode error: the error reaches Envoy, whose own failure mode decides; and so
	// does a 503 decision (a dependency could not answer), as UNAVAILABLE.
	errorRoute := spoof
	errorRoute.Context = map[string]string{envoy.ContextKeyFailureMode: "error"}
	fail = status.Error(codes.Unavailable, "redis down")
	if _, err := authc.Check(context.Background(), errorRoute.CheckRequest()); status.Code(err) != codes.Unavailable {
		t.Errorf("failure_mode error on a route: got %v, want UNAVAILABLE", err)
	}
	srv.SetConfig(envoy.AuthConfig{FailureMode: envoy.FailError})
	fail = status.Error(codes.DeadlineExceeded, "deadline exceeded before Warden could decide")
	if _, err := authc.Check(context.Background(), spoof.CheckRequest()); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("failure_mode error: got %v, want DEADLINE_EXCEEDED", err)
	}
	wantDenied(t, check(t, closedRoute), 503)
	fail = nil
	f.decide = func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return &wardenv1.CheckResponse{HttpStatus: 503, ResponseHeaders: []*wardenv1.Header{{Name: "Retry-After", Value: "1"}}}, nil
	}
	if _, err := authc.Check(context.Background(), spoof.CheckRequest()); status.Code(err) != codes.Unavailable {
		t.Errorf("failure_mode error, a 503 decision: got %v, want UNAVAILABLE", err)
	}
	wantDenied(t, check(t, closedRoute), 503)

	srv.SetConfig(envoy.AuthConfig{Disabled: true})
	if _, err := authc.Check(context.Background(), spoof.CheckRequest()); status.Code(err) != codes.Unimplemented {
		t.Errorf("disabled: got %v, want UNIMPLEMENTED", err)
	}
	if !strings.Contains(logs.String(), "redis down") {
		t.Errorf("the cause was not logged: %s", logs.String())
	}
}

// TestUnavailableDecisionMapping: Warden's 503 decision (a dependency could not answer)
// reaches Envoy as a 503 denial with code UNAVAILABLE and exactly one Retry-After.
func TestUnavailableDecisionMapping(t *testing.T) {
	got := envoy.CheckResponseToEnvoy(&wardenv1.CheckResponse{HttpStatus: 503,
		ResponseHeaders: []*wardenv1.Header{{Name: "Retry-After", Value: "1"}}})
	if c := codes.Code(got.GetStatus().GetCode()); c != codes.Unavailable {
		t.Errorf("code = %v, want UNAVAILABLE", c)
	}
	d := got.GetDeniedResponse()
	if d.GetStatus().GetCode() != 503 {
		t.Errorf("HTTP status = %v, want 503", d.GetStatus().GetCode())
	}
	n := 0
	for _, h := range d.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), "retry-after") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d Retry-After headers, want 1", n)
	}
}
