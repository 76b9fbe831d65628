package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// auditLines returns the JSON log lines of logs whose msg is msg.
func auditLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditLineCarriesRequestAndTraceID: the audit line of a denied call carries the call's
// x-request-id and the trace id of its sampled span; without an x-request-id, a generated id,
// and without a sampled span, no trace id.
func TestAuditLineCarriesRequestAndTraceID(t *testing.T) {
	r := start(t, exampleEnv, "-config", writeConfig(t, "telemetry:\n  trace_sample_ratio: 0.0001\n"+
		"authn:\n  api_keys:\n    environment: live\n    pepper: ${WARDEN_PEPPER}\n"))
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	deny := func(ctx context.Context) {
		t.Helper()
		resp, err := c.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: "not-a-key"}})
		if err != nil || resp.GetReason() == wardenv1.DenyReason_DENY_REASON_UNSPECIFIED {
			t.Fatalf("Authenticate: %v %v, want a denial", resp, err)
		}
	}
	deny(metadata.AppendToOutgoingContext(context.Background(),
		"x-request-id", "req-7f3a", "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01"))
	deny(context.Background())

	lines := auditLines(t, r.logs.String(), "authentication failed")
	if len(lines) != 2 {
		t.Fatalf("%d audit lines of the denials, want 2; logs:\n%s", len(lines), r.logs)
	}
	if got := lines[0]; got["log"] != "audit" || got["request_id"] != "req-7f3a" || got["trace_id"] != traceID {
		t.Errorf("audit line of the traced call: %v, want log=audit, request_id=req-7f3a, trace_id=%s", got, traceID)
	}
	if id, _ := lines[1]["request_id"].(string); len(id) != 32 || id == "req-7f3a" {
		t.Errorf("audit line of a call without x-request-id: request_id %q, want a generated 32-hex-digit id", id)
	}
	if _, ok := lines[1]["trace_id"]; ok {
		t.Errorf("audit line of an unsampled call has a trace_id: %v", lines[1])
	}
}

// TestRequestIDStableAndLazy: every line of one call carries the same id, and a call that
// logs nothing generates none.
func TestRequestIDStableAndLazy(t *testing.T) {
	var buf strings.Builder
	log, _ := newLogger(&buf, config.Log{Level: "info"})
	before := requestIDSeq.Load()
	u := testStack(t)
	_, _ = u.intercept(context.Background(), nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
		return nil, nil
	})
	if n := requestIDSeq.Load() - before; n != 0 {
		t.Errorf("a call that logged nothing generated %d ids", n)
	}
	_, _ = u.intercept(context.Background(), nil, &grpc.UnaryServerInfo{}, func(ctx context.Context, _ any) (any, error) {
		log.InfoContext(ctx, "one")
		log.With("log", "audit").LogAttrs(ctx, slog.LevelWarn, "two")
		return nil, nil
	})
	var ids []any
	for _, m := range append(auditLines(t, buf.String(), "one"), auditLines(t, buf.String(), "two")...) {
		ids = append(ids, m["request_id"])
	}
	if len(ids) != 2 || ids[0] == nil || ids[0] != ids[1] {
		t.Errorf("request ids of two lines of one call: %v, want one id twice\n%s", ids, buf.String())
	}
}

// TestFindRequestID: Envoy's request id first, then x-request-id headers and metadata, cut
// at maxRequestIDLen; otherwise generated, different each time.
func TestFindRequestID(t *testing.T) {
	envoyReq := func(id string, headers map[string]string) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Id: id, Headers: headers}}}}
	}
	md := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", "from-metadata"))
	long := strings.Repeat("x", 300)
	for _, tt := range []struct {
		name string
		ctx  context.Context
		req  any
		want string
	}{
		{"ext_authz id", md, envoyReq("envoy-id", map[string]string{"x-request-id": "header"}), "envoy-id"},
		{"ext_authz header", md, envoyReq("", map[string]string{"x-request-id": "header"}), "header"},
		{"ext_authz without either", md, envoyReq("", nil), "from-metadata"},
		{"check header", md, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Headers: map[string]string{"x-request-id": "check-header"}}}, "check-header"},
		{"metadata", md, &wardenv1.AuthenticateRequest{}, "from-metadata"},
		{"cut", metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-request-id", long)), nil, long[:maxRequestIDLen]},
	} {
		if got := findRequestID(tt.ctx, tt.req); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
	a, b := findRequestID(context.Background(), nil), findRequestID(context.Background(), nil)
	if len(a) != 32 || a == b {
		t.Errorf("generated ids %q, %q: want two different 32-digit ids", a, b)
	}
}

// testStack is the server's unary interceptor stack with real (SDK) metrics.
func testStack(tb testing.TB) unaryStack {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tb.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	r := newRPCMetrics()
	if err := r.observe(mp.Meter("")); err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	wardenv1.RegisterWardenServiceServer(s, wardenv1.UnimplementedWardenServiceServer{})
	r.addMethods(s)
	return unaryStack{r, service.RecoverUnary(slog.New(slog.DiscardHandler))}
}

// TestUnaryStackAllocs: metrics, request ids and recovery cost a call one allocation (the
// context that knows the call), as grpc.ChainUnaryInterceptor(metrics, recovery) alone did
// (its closure): request ids add none. The three chained by grpc cost 3. The id is found or
// generated only when a line is logged.
func TestUnaryStackAllocs(t *testing.T) {
	u := testStack(t)
	info := &grpc.UnaryServerInfo{FullMethod: wardenv1.WardenService_Check_FullMethodName}
	resp := &wardenv1.CheckResponse{Allowed: true}
	handler := func(ctx context.Context, _ any) (any, error) { sinkCtx = ctx; return resp, nil } // escapes, as in a server
	if n := testing.AllocsPerRun(1000, func() { _, _ = u.intercept(context.Background(), nil, info, handler) }); n > 1 {
		t.Errorf("allocs per call: got %v, want at most 1", n)
	}
}

var sinkCtx context.Context

func BenchmarkUnaryStack(b *testing.B) {
	u := testStack(b)
	info := &grpc.UnaryServerInfo{FullMethod: wardenv1.WardenService_Check_FullMethodName}
	resp := &wardenv1.CheckResponse{Allowed: true}
	handler := func(ctx context.Context, _ any) (any, error) { sinkCtx = ctx; return resp, nil }
	b.ReportAllocs()
	for b.Loop() {
		_, _ = u.intercept(context.Background(), nil, info, handler)
	}
}
