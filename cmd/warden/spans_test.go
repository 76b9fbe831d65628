package main

import (
	"context"
	"strings"
	"testing"

	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc/metadata"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
)

// spanConfig: tracing on (the ratio alone samples almost nothing: a sampled parent decides),
// rate limits on Redis, a public route limited per route, API keys.
func spanConfig(redisAddr string) string {
	return `server: {drain: 1ms}
telemetry: {trace_sample_ratio: 0.0001}
redis: {addrs: [` + redisAddr + `]}
authn:
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
          rate_limit: {unit: day, requests_per_unit: 1000}
envoy:
  ext_authz: {enabled: true}
  rls: {enabled: true}
`
}

// traceparent is a sampled (or not) W3C traceparent of trace id and parent span id 00f067aa0ba902b7.
func traceparent(id string, sampled bool) string {
	f := "00"
	if sampled {
		f = "01"
	}
	return "00-" + id + "-00f067aa0ba902b7-" + f
}

// keptSpans keeps its spans when Warden shuts the exporter down (stopping Warden is how the
// test waits for the last server span to end).
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// TestDecisionSpans: with tracing on, a sampled call gets spans for the Envoy adapter's
// decision, Warden's decision, each of Check's steps and the Redis Take (with its pipeline's
// size), parented by the W3C trace context of the gRPC metadata or, for ext_authz, of the
// HTTP request's headers; their attributes say what was decided, never who asked. An
// unsampled call gets none.
func TestDecisionSpans(t *testing.T) {
	srv := redistest.Start(t)
	exp := keptSpans{tracetest.NewInMemoryExporter()}
	w := startWith(t, exp, exampleEnv, "-config", writeConfig(t, spanConfig(srv.Addr())), "-admin-addr", "off")
	cc := dial(t, w.GRPC)
	ea, rls, api := authv3.NewAuthorizationClient(cc), rlsv3.NewRateLimitServiceClient(cc), wardenv1.NewWardenServiceClient(cc)
	traced := func(id string, sampled bool) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent(id, sampled))
	}
	extAuthz := func(ctx context.Context, headers map[string]string) {
		t.Helper()
		resp, err := ea.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/things", Host: "api", Headers: headers}}}})
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("ext_authz Check: %v %v, want allowed", resp, err)
		}
	}
	const (
		traceExt   = "4bf92f3577b34da6a3ce929d0e0e4731"
		traceRLS   = "4bf92f3577b34da6a3ce929d0e0e4732"
		traceAuthn = "4bf92f3577b34da6a3ce929d0e0e4733"
		traceHTTP  = "4bf92f3577b34da6a3ce929d0e0e4734"
		traceOff   = "4bf92f3577b34da6a3ce929d0e0e4735"
		traceOffH  = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	extAuthz(traced(traceExt, true), nil)
	if resp, err := rls.ShouldRateLimit(traced(traceRLS, true), &rlsv3.RateLimitRequest{Domain: "api",
		Descriptors: []*commonrlv3.RateLimitDescriptor{{Entries: []*commonrlv3.RateLimitDescriptor_Entry{{Key: "route", Value: "x"}}}}}); err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("ShouldRateLimit: %v %v, want OK", resp, err)
	}
	if resp, err := api.Authenticate(traced(traceAuthn, true), &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: "not-a-key"}}); err != nil || resp.GetAuthenticated() {
		t.Fatalf("Authenticate: %v %v, want a denial", resp, err)
	}
	extAuthz(context.Background(), map[string]string{"traceparent": traceparent(traceHTTP, true)})
	extAuthz(traced(traceOff, false), map[string]string{"traceparent": traceparent(traceOffH, false)})
	w.stop(t)

	spans := exp.GetSpans()
	byTrace := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		byTrace[s.SpanContext.TraceID().String()] = append(byTrace[s.SpanContext.TraceID().String()], s)
		for _, kv := range s.Attributes {
			if k := string(kv.Key); strings.Contains(k, "subject") || strings.Contains(k, "tenant") || strings.Contains(k, "key_id") || strings.Contains(k, "principal") {
				t.Errorf("span %s has attribute %s: no principal leaves the process", s.Name, k)
			}
		}
	}
	find := func(trace, name string) tracetest.SpanStub {
		t.Helper()
		for _, s := range byTrace[trace] {
			if s.Name == name {
				return s
			}
		}
		var names []string
		for _, s := range byTrace[trace] {
			names = append(names, s.Name)
		}
		t.Fatalf("trace %s: no span %s among %v", trace, name, names)
		return tracetest.SpanStub{}
	}
	attr := func(s tracetest.SpanStub, k string) attribute.Value {
		for _, kv := range s.Attributes {
			if string(kv.Key) == k {
				return kv.Value
			}
		}
		return attribute.Value{}
	}
	childOf := func(child, parent tracetest.SpanStub) {
		t.Helper()
		if child.Parent.SpanID() != parent.SpanContext.SpanID() {
			t.Errorf("%s's parent is %s, want %s (%s)", child.Name, child.Parent.SpanID(), parent.SpanContext.SpanID(), parent.Name)
		}
	}

	// ext_authz, traced by Envoy (gRPC metadata): server span → adapter → Check → steps → Take.
	server := find(traceExt, authv3.Authorization_Check_FullMethodName[1:])
	if server.Parent.SpanID().String() != "00f067aa0ba902b7" || !server.Parent.IsRemote() {
		t.Errorf("server span's parent: %v, want the remote span of the metadata's traceparent", server.Parent)
	}
	adapter := find(traceExt, "warden.ext_authz")
	childOf(adapter, server)
	if got := attr(adapter, "warden.outcome").AsString(); got != "allowed" {
		t.Errorf("warden.ext_authz outcome %q, want allowed", got)
	}
	check := find(traceExt, "warden.Check")
	childOf(check, adapter)
	for _, step := range []string{"warden.check.target", "warden.check.authenticate", "warden.check.permit", "warden.check.limits", "warden.check.allow"} {
		childOf(find(traceExt, step), check)
	}
	if got := attr(find(traceExt, "warden.check.target"), "warden.route").AsString(); got != "things" {
		t.Errorf("target step's route %q, want things", got)
	}
	take := find(traceExt, "warden.redis.take")
	childOf(take, find(traceExt, "warden.check.limits"))
	if got := attr(take, "warden.redis.batch_size").AsInt64(); got < 1 {
		t.Errorf("warden.redis.take batch size %d, want at least 1", got)
	}
	if got := attr(take, "warden.redis.limits").AsInt64(); got != 1 {
		t.Errorf("warden.redis.take limits %d, want 1", got)
	}

	// RLS: adapter → CheckRateLimit → Take.
	rlsSpan := find(traceRLS, "warden.rls")
	childOf(rlsSpan, find(traceRLS, rlsv3.RateLimitService_ShouldRateLimit_FullMethodName[1:]))
	crl := find(traceRLS, "warden.CheckRateLimit")
	childOf(crl, rlsSpan)
	childOf(find(traceRLS, "warden.redis.take"), crl)
	if got := attr(crl, "warden.ratelimit.domain").AsString(); got != "api" {
		t.Errorf("CheckRateLimit domain %q, want api", got)
	}

	// Authenticate: denied, with its reason.
	au := find(traceAuthn, "warden.Authenticate")
	if o, r := attr(au, "warden.outcome").AsString(), attr(au, "warden.reason").AsString(); o != "denied" || r == "" {
		t.Errorf("Authenticate span outcome %q reason %q, want denied with a reason", o, r)
	}

	// ext_authz without Envoy tracing, the HTTP request's traceparent: Warden's spans join it.
	decide := find(traceHTTP, "warden.ext_authz.decide")
	if decide.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("warden.ext_authz.decide's parent %v, want the HTTP request's span", decide.Parent)
	}
	childOf(find(traceHTTP, "warden.Check"), decide)

	// Unsampled: no span at all, in either trace.
	if n := len(byTrace[traceOff]) + len(byTrace[traceOffH]); n != 0 {
		t.Errorf("%d spans of unsampled calls, want none", n)
	}
}
