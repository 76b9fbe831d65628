package service_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/service"
)

// publicDeps is a Warden with public and webhook routes, which need no authentication.
func publicDeps(t *testing.T, now time.Time) *service.Deps {
	t.Helper()
	pol, err := authz.Compile(authz.Config{Routes: []authz.RouteConfig{
		{Name: "status", Method: "GET", Path: "/v1/status", Public: true, StripHeaders: []string{"x-internal"},
			RateLimits: []authz.RateLimitConfig{{Domain: "edge", Descriptors: []authz.DescriptorConfig{
				{Key: "route", From: "route.name"}, {Key: "client", From: "header.x-client-id"}}}}},
		{Name: "gh-hook", Method: "POST", Path: "/hooks/github", Webhook: "gh"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), Logger: quietLogger(), Domains: []limiter.Domain{{
		Name: "edge", Descriptors: []limiter.Descriptor{{Key: "route", Value: "status", Descriptors: []limiter.Descriptor{
			{Key: "client", RateLimit: &limiter.RateLimit{Name: "per_client", Unit: "minute", RequestsPerUnit: 2}}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := webhook.New(webhook.Config{
		Sources: []webhook.Source{{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}, Replay: true}},
		Replay:  webhook.NewMemoryReplay(webhook.MemoryReplayConfig{Now: func() time.Time { return now }}),
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return &service.Deps{Policy: pol, Limiter: lim, Webhooks: v}
}

func header(hs []*wardenv1.Header, name string) string {
	for _, h := range hs {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

func TestCheckPublicRouteRateLimitedUntil429(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: publicDeps(t, time.Now())}))
	check := func(client string) *wardenv1.CheckResponse {
		t.Helper()
		resp, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
			Method: "GET", Path: "/v1/status?verbose=1", Headers: map[string]string{"x-client-id": client, "x-warden-subject": "spoofed", "x-warden-impersonate": "root"}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := 0; i < 2; i++ {
		r := check("c1")
		if !r.Allowed || r.HttpStatus != 200 || r.Route != "status" {
			t.Fatalf("request %d: got %v, want allowed on route status", i, r)
		}
		if header(r.ResponseHeaders, "RateLimit") == "" {
			t.Errorf("request %d: no RateLimit header on an allowed response", i)
		}
		// A public caller has no identity: every identity header the client may have sent is removed.
		removed := map[string]bool{}
		for _, h := range r.UpstreamHeadersToRemove {
			removed[h] = true
		}
		if !removed[idheader.Subject] || !removed["x-warden-impersonate"] || !removed["x-internal"] || len(r.UpstreamHeaders) != 0 {
			t.Errorf("request %d: upstream headers %v, removed %v; want the spoofed subject, x-warden-impersonate (a name Warden does not set, but its own) and x-internal removed",
				i, r.UpstreamHeaders, r.UpstreamHeadersToRemove)
		}
	}
	r := check("c1")
	if r.Allowed || r.HttpStatus != 429 || r.Stage != wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT ||
		r.Reason != wardenv1.DenyReason_DENY_REASON_RATE_LIMITED || header(r.ResponseHeaders, "Retry-After") == "" {
		t.Fatalf("third request: got %v, want 429 with Retry-After", r)
	}
	if r := check("c2"); !r.Allowed {
		t.Fatalf("another client: got %v, want allowed", r)
	}
}

func TestCheckWebhookRoute(t *testing.T) {
	for _, tt := range []struct {
		replayStatus, want int32
	}{{0, 409}, {409, 409}, {200, 200}} {
		t.Run(fmt.Sprint(tt.replayStatus), func(t *testing.T) { testCheckWebhookRoute(t, tt.replayStatus, tt.want) })
	}
}

func testCheckWebhookRoute(t *testing.T, replayStatus, want int32) {
	now := time.Unix(1_800_000_000, 0)
	deps := publicDeps(t, now)
	deps.WebhookReplayStatus = replayStatus
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: deps}))
	body := []byte(`{"zen":"Keep it logically awesome."}`)
	h, err := webhook.Sign(webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}}, "d-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	lower := map[string]string{}
	for k, v := range h {
		lower[toLower(k)] = v
	}
	check := func(b []byte) *wardenv1.CheckResponse {
		t.Helper()
		resp, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "POST", Path: "/hooks/github", Headers: lower, Body: b}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tampered := append([]byte(nil), body...)
	tampered[5] ^= 0x20
	if r := check(tampered); r.Allowed || r.Stage != wardenv1.CheckStage_CHECK_STAGE_WEBHOOK || r.HttpStatus != 401 {
		t.Fatalf("tampered body: got %v, want a 401 webhook denial", r)
	}
	if r := check(body); !r.Allowed {
		t.Fatalf("valid delivery: got %v, want allowed", r)
	}
	if r := check(body); r.Allowed || r.Reason != wardenv1.DenyReason_DENY_REASON_DUPLICATE || r.HttpStatus != want {
		t.Fatalf("redelivery: got %v, want a duplicate refused with %d and not forwarded", r, want)
	}
}

func TestCheckRoutingDenials(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: publicDeps(t, time.Now())}))
	for path, want := range map[string]int32{
		"/v1/status/../admin": 400, // malformed: refused, not cleaned up
		"/v1/%2e%2e/status":   400,
	} {
		r, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: path}})
		if err != nil || r.Allowed || r.HttpStatus != want {
			t.Errorf("%s: got %v, %v; want denied with %d", path, r, err, want)
		}
	}
	if _, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "relative"}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("relative path: got %v, want INVALID_ARGUMENT", err)
	}
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

func TestCheckRefusesActionWithRoute(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: publicDeps(t, time.Now())}))
	for name, req := range map[string]*wardenv1.CheckRequest{
		"http":        {Action: "orders:read", Resource: &wardenv1.Resource{Type: "order"}, Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/status"}},
		"grpc_method": {Action: "orders:read", Resource: &wardenv1.Resource{Type: "order"}, GrpcMethod: "/pkg.Svc/Get"},
	} {
		if _, err := c.Check(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s with an action: got %v, want INVALID_ARGUMENT", name, err)
		}
	}
}

// downStore is a rate-limit store that cannot answer.
type downStore struct{}

func (downStore) Take(context.Context, string, []limiter.Hit, []limiter.Status) (bool, error) {
	return false, errors.New("connection refused")
}

// TestCheckRateLimitStoreDownIs503Decision: a route's limit in a fail_closed domain whose
// store cannot answer makes Check answer a 503 decision with Retry-After, never an RPC error
// (which a gateway with failure_mode_allow would turn into an allow).
func TestCheckRateLimitStoreDownIs503Decision(t *testing.T) {
	d := publicDeps(t, time.Now())
	lim, err := limiter.New(limiter.Config{Store: downStore{}, Logger: quietLogger(), Domains: []limiter.Domain{{
		Name: "edge", FailurePolicy: limiter.FailClosed, Descriptors: []limiter.Descriptor{{Key: "route", Value: "status", Descriptors: []limiter.Descriptor{
			{Key: "client", RateLimit: &limiter.RateLimit{Name: "per_client", Unit: "minute", RequestsPerUnit: 2}}}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	d.Limiter = lim
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: d}))
	for i := range 10 { // through the breaker's opening
		r, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
			Method: "GET", Path: "/v1/status", Headers: map[string]string{"x-client-id": "c1"}}})
		if err != nil {
			t.Fatalf("request %d: got %v, want a 503 decision", i, err)
		}
		if r.Allowed || r.HttpStatus != 503 || r.Stage != wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT || header(r.ResponseHeaders, "Retry-After") != "1" ||
			len(r.RateLimits) != 1 || !r.RateLimits[0].StoreUnavailable {
			t.Fatalf("request %d: got %v, want a 503 with Retry-After: 1 and the limit marked store_unavailable", i, r)
		}
	}
}
