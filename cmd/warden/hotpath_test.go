package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// hotPathConfig: the in-memory store, a public route limited per route, API keys; tracing on
// or off.
func hotPathConfig(tracing bool) string {
	c := `authn:
  api_keys: {environment: live, pepper: "${WARDEN_PEPPER}"}
authz:
  routes:
    - name: things
      method: GET
      path: /v1/things
      public: true
      rate_limits:
        - domain: api
          descriptors: [{key: route, from: route.name}]
rate_limit:
  domains:
    - domain: api
      descriptors:
        - key: route
          rate_limit: {unit: second, requests_per_unit: 1000000000}
envoy:
  ext_authz: {enabled: true}
  rls: {enabled: true}
`
	if tracing {
		c += "telemetry: {trace_sample_ratio: 0.5}\n"
	}
	return c
}

// hotPathApp builds Warden's handlers as run does (without serving): the service, the Envoy
// adapters, the metrics interceptor and, with tracing, the tracing wrappers.
func hotPathApp(tb testing.TB, tracing bool) *app {
	tb.Helper()
	return handlersApp(tb, hotPathConfig(tracing))
}

// userOrdersAuthz is the roles, ownership and the start of the routes of the tests' usual
// authz block (after "authz:" and any setting of its own): user may read orders, and the
// route user_orders (GET /v1/users/{user_id}/orders) reaches only the caller's own, its
// remaining settings following.
const userOrdersAuthz = `  roles:
    user: {permissions: ["orders:read"]}
  ownership:
    order: {}
  routes:
    - name: user_orders
      method: GET
      path: /v1/users/{user_id}/orders
      action: orders:read
      resource_type: order
      owner_param: user_id
`

// userOrdersPerUserLimit ends the route of userOrdersAuthz with a limit per user (domain api,
// descriptor user from the subject) and starts the rate_limit block that defines it, up to the
// descriptor's own limit.
const userOrdersPerUserLimit = `      rate_limits:
        - domain: api
          descriptors: [{key: user, from: principal.subject}]
rate_limit:
  domains:
    - domain: api
      descriptors:
        - key: user
`

// handlersApp builds Warden's handlers from config text, as run does (without serving).
func handlersApp(tb testing.TB, text string) *app {
	tb.Helper()
	p := writeConfigTB(tb, text)
	env := func(k string) (string, bool) { v, ok := exampleEnv[k]; return v, ok }
	cfg, err := config.Load(p, env)
	if err != nil {
		tb.Fatal(err)
	}
	log, level := newLogger(io.Discard, config.Log{Level: "error"})
	a := &app{log: log, level: level, cfg: cfg, env: env}
	tb.Cleanup(a.close)
	if err := a.start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return a
}

// decisionCall is one decision of a handler, as the server calls it: through the metrics
// interceptor (metrics on) or not (off), and through the tracing wrappers when a.tel traces.
type decisionCall struct {
	name, method string
	req          any
	handler      func(a *app) grpc.UnaryHandler
	// logs: the decision writes a line (an audit line), which needs a request id.
	logs bool
}

var decisionCalls = []decisionCall{
	{"CheckRateLimit", wardenv1.WardenService_CheckRateLimit_FullMethodName,
		&wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{
			{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "route", Value: "x"}}}}},
		func(a *app) grpc.UnaryHandler {
			return func(ctx context.Context, r any) (any, error) {
				return a.srv.CheckRateLimit(ctx, r.(*wardenv1.CheckRateLimitRequest))
			}
		}, false},
	{"Authenticate", wardenv1.WardenService_Authenticate_FullMethodName,
		&wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: "not-a-key"}},
		func(a *app) grpc.UnaryHandler {
			return func(ctx context.Context, r any) (any, error) {
				return a.srv.Authenticate(ctx, r.(*wardenv1.AuthenticateRequest))
			}
		}, true},
	{"Check", wardenv1.WardenService_Check_FullMethodName,
		&wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/things"}},
		func(a *app) grpc.UnaryHandler {
			return func(ctx context.Context, r any) (any, error) { return a.srv.Check(ctx, r.(*wardenv1.CheckRequest)) }
		}, false},
	{"ExtAuthz", authv3.Authorization_Check_FullMethodName,
		&authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/things", Host: "api",
				Headers: map[string]string{"traceparent": traceparent("4bf92f3577b34da6a3ce929d0e0e4736", false)}}}}},
		func(a *app) grpc.UnaryHandler {
			var s authv3.AuthorizationServer = a.envoy.auth
			if tr := a.tel.tracer(); tr != nil {
				s = tracedAuth{s, tr}
			}
			return func(ctx context.Context, r any) (any, error) { return s.Check(ctx, r.(*authv3.CheckRequest)) }
		}, false},
	{"RLS", rlsv3.RateLimitService_ShouldRateLimit_FullMethodName,
		&rlsv3.RateLimitRequest{Domain: "api", Descriptors: []*commonrlv3.RateLimitDescriptor{
			{Entries: []*commonrlv3.RateLimitDescriptor_Entry{{Key: "route", Value: "x"}}}}},
		func(a *app) grpc.UnaryHandler {
			var s rlsv3.RateLimitServiceServer = timedRLS{a.envoy.rls, &a.peer}
			if tr := a.tel.tracer(); tr != nil {
				s = tracedRLS{s, tr}
			}
			return func(ctx context.Context, r any) (any, error) {
				return s.ShouldRateLimit(ctx, r.(*rlsv3.RateLimitRequest))
			}
		}, false},
}

// call returns one decision of dc on a, through the server's unary interceptor (unaryStack:
// metrics, request-id context, recovery, as serverOptions builds it) or through none (off).
func (dc decisionCall) call(a *app, intercepted bool) func() {
	h := dc.handler(a)
	info := &grpc.UnaryServerInfo{FullMethod: dc.method}
	ctx := context.Background()
	if !intercepted {
		return func() { _, _ = h(ctx, dc.req) }
	}
	stack := unaryStack{a.tel.rpc, service.RecoverUnary(a.log)}
	return func() { _, _ = stack.intercept(ctx, dc.req, info, h) }
}

// TestDecisionHandlersHotPathAllocs (issue 17): on each deciding handler (CheckRateLimit,
// Authenticate, Check, ext_authz, RLS), the server's interceptor adds one allocation per
// decision, the context that knows the call (for its request id), and one more, the id's
// string, only when the call logs a line without a request id of the caller's (Authenticate's
// denial is audited); the metrics in it add none, and neither does tracing for a call that is
// not sampled (the ext_authz request even carries an unsampled traceparent).
func TestDecisionHandlersHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector (sync.Pool drops items at random)")
	}
	plain, traced := hotPathApp(t, false), hotPathApp(t, true)
	for _, dc := range decisionCalls {
		off := testing.AllocsPerRun(200, dc.call(plain, false))
		info, h, ctx := &grpc.UnaryServerInfo{FullMethod: dc.method}, dc.handler(plain), context.Background()
		metrics := testing.AllocsPerRun(200, func() { _, _ = plain.tel.rpc.unary(ctx, dc.req, info, h) })
		on := testing.AllocsPerRun(200, dc.call(plain, true))
		tr := testing.AllocsPerRun(200, dc.call(traced, true))
		t.Logf("%s: %v allocs per decision without the interceptor, %v with the metrics alone, %v with the interceptor, %v with tracing on (unsampled)",
			dc.name, off, metrics, on, tr)
		if metrics != off {
			t.Errorf("%s: metrics add %v allocs per decision, want 0", dc.name, metrics-off)
		}
		want := off + 1 // the call's context
		if dc.logs {
			want++ // its generated request id
		}
		if on != want {
			t.Errorf("%s: the interceptor adds %v allocs per decision, want %v", dc.name, on-off, want-off)
		}
		if tr != on {
			t.Errorf("%s: tracing an unsampled call adds %v allocs per decision, want 0", dc.name, tr-on)
		}
	}
}

// BenchmarkDecisionHandlers: each deciding handler without the server's interceptor (off),
// through it (on), and through it with tracing on for an unsampled call. Compare with
// benchstat (-count 6, interleaved runs), on cpu-ns/op: the differences are the interceptor's
// (metrics, request-id context, recovery) and the idle tracing's CPU per decision.
func BenchmarkDecisionHandlers(b *testing.B) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	plain, traced := hotPathApp(b, false), hotPathApp(b, true)
	for _, dc := range decisionCalls {
		for _, v := range []struct {
			name        string
			a           *app
			intercepted bool
		}{{"off", plain, false}, {"on", plain, true}, {"tracing", traced, true}} {
			b.Run(dc.name+"/"+v.name, func(b *testing.B) {
				call := dc.call(v.a, v.intercepted)
				b.ReportAllocs()
				var before, after syscall.Rusage
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
				for b.Loop() {
					call()
				}
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
				// CPU time, not wall time: on a shared machine the benchmark gets a fraction
				// of a core, which ns/op counts as if it were work.
				cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
				b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func writeConfigTB(tb testing.TB, text string) string {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}
