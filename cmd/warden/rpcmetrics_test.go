package main

import (
	"context"
	"math"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients/envoy"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
)

var exampleEnv = map[string]string{
	"WARDEN_PEPPER":         "an-example-pepper-that-is-long-enough-0123456789",
	"GITHUB_WEBHOOK_SECRET": "an-example-github-secret-long-enough",
}

// metricLine returns the value of the first /metrics line that starts with name and holds
// every label pair given, or "" when there is none.
func metricLine(body, name string, labels ...string) string {
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

// TestMetricsPerRPCAndDecision drives each kind of decision through a real server and reads
// them back from /metrics, with the Go runtime and process collectors.
func TestMetricsPerRPCAndDecision(t *testing.T) {
	r := start(t, exampleEnv, "-config", "../../examples/warden.yaml")
	cc := dial(t, r.GRPC)
	c := wardenv1.NewWardenServiceClient(cc)
	ctx := context.Background()
	for range 3 {
		if resp, err := c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/healthz"}}); err != nil || !resp.Allowed {
			t.Fatalf("public route: %v %v", resp, err)
		}
	}
	if resp, err := c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/users/alice/orders"}}); err != nil || resp.Allowed {
		t.Fatalf("no credentials: %v %v", resp, err)
	}
	// Unknown domains and routes must not become label values.
	for _, d := range []string{"unknown-domain-x1", "unknown-domain-x2"} {
		_, err := c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: d,
			Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: "secret-user-7"}}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/no/such/route-x3"}}); err != nil {
		t.Fatal(err)
	}
	ea := authv3.NewAuthorizationClient(cc)
	if _, err := ea.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/v1/users/bob/orders", Headers: map[string]string{"authorization": "Bearer x.y.z"}}}}}); err != nil {
		t.Fatal(err)
	}

	_, body := httpGet(t, "http://"+r.Admin+"/metrics")
	for _, want := range []struct {
		name   string
		labels []string
		value  string
	}{
		{"warden_grpc_server_calls_total", []string{`grpc_service="warden.v1.WardenService"`, `grpc_method="Check"`, `grpc_code="OK"`}, "5"},
		{"warden_grpc_server_calls_total", []string{`grpc_method="CheckRateLimit"`, `grpc_code="OK"`}, "2"},
		{"warden_grpc_server_calls_total", []string{`grpc_service="envoy.service.auth.v3.Authorization"`, `grpc_method="Check"`, `grpc_code="OK"`}, "1"},
		{"warden_grpc_server_duration_seconds_count", []string{`grpc_service="warden.v1.WardenService"`, `grpc_method="Check"`, `grpc_code="OK"`}, "5"},
		{"warden_grpc_server_duration_seconds_bucket", []string{`grpc_service="warden.v1.WardenService"`, `grpc_method="Check"`, `grpc_code="OK"`, `le="+Inf"`}, "5"},
		{"warden_grpc_server_duration_seconds_bucket", []string{`grpc_method="Check"`, `le="5e-05"`}, ""},
		{"warden_grpc_server_in_flight", []string{`grpc_service="warden.v1.WardenService"`, `grpc_method="Check"`}, "0"},
		{"warden_decisions_total", []string{`kind="check"`, `outcome="allowed"`, `reason="none"`}, "3"},
		{"warden_decisions_total", []string{`kind="check"`, `outcome="denied"`, `reason="no_credentials"`}, "2"},
		{"warden_decisions_total", []string{`kind="rate_limit"`, `outcome="allowed"`, `reason="none"`}, "2"},
		{"warden_decisions_total", []string{`kind="ext_authz"`, `outcome="denied"`, `reason="malformed_credentials"`}, "1"},
		{"target_info", []string{`service_name="warden"`, `service_version="`}, "1"},
		{"go_goroutines", nil, ""},
		{"process_resident_memory_bytes", nil, ""},
	} {
		got := metricLine(body, want.name, want.labels...)
		if got == "" || want.value != "" && got != want.value {
			t.Errorf("%s%v: got %q, want %q", want.name, want.labels, got, want.value)
		}
	}
	for _, leak := range []string{"unknown-domain", "secret-user", "route-x3", "alice", "bob"} {
		if strings.Contains(body, leak) {
			t.Errorf("/metrics holds %q, a value from a request", leak)
		}
	}
	// Every label set is one the server built at start: no label value is free text.
	re := regexp.MustCompile(`(?m)^warden_decisions_total\{.*reason="([^"]*)"`)
	for _, m := range re.FindAllStringSubmatch(body, -1) {
		if strings.ContainsAny(m[1], "-/ ") {
			t.Errorf("reason label %q", m[1])
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{"OK": "ok", "DeadlineExceeded": "deadline_exceeded", "Unavailable": "unavailable"} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q): got %q, want %q", in, got, want)
		}
	}
}

// meteredUnary is the interceptor chain's cost with and without metrics, on a handler that
// does nothing (the metrics' share of a decision).
func meteredUnary(tb testing.TB, withMetrics bool) func() {
	m := noop.NewMeterProvider().Meter("")
	if withMetrics {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		tb.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		m = mp.Meter("")
	}
	r := newRPCMetrics()
	if err := r.observe(m); err != nil {
		tb.Fatal(err)
	}
	s := grpc.NewServer()
	wardenv1.RegisterWardenServiceServer(s, wardenv1.UnimplementedWardenServiceServer{})
	r.addMethods(s)
	info := &grpc.UnaryServerInfo{FullMethod: wardenv1.WardenService_Check_FullMethodName}
	denied := &wardenv1.CheckResponse{Reason: wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE}
	handler := func(context.Context, any) (any, error) { return denied, nil }
	ctx := context.Background()
	if !withMetrics {
		return func() { _, _ = handler(ctx, nil) }
	}
	return func() { _, _ = r.unary(ctx, nil, info, handler) }
}

func TestRPCMetricsAllocateNothing(t *testing.T) {
	call := meteredUnary(t, true)
	if n := testing.AllocsPerRun(1000, call); n != 0 {
		t.Errorf("allocs per metered call: got %v, want 0", n)
	}
	r := newRPCMetrics()
	ctx := context.Background()
	unavailable := status.Error(codes.Unavailable, "x")
	dc := decisionChecker{Checker: checkerFunc(func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return nil, unavailable
	}), d: &r.d}
	if n := testing.AllocsPerRun(100, func() { _, _ = dc.Check(ctx, nil) }); n != 0 {
		t.Errorf("allocs per ext_authz decision counted: got %v, want 0", n)
	}
}

// cpuTime is the process's CPU time (user and system) in nanoseconds.
func cpuTime(t *testing.T) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// TestExtAuthzFailOpenCounted runs the real ext_authz adapter, failing open, through the
// interceptor: the fail-open is counted, and so is the error beneath it.
func TestExtAuthzFailOpenCounted(t *testing.T) {
	for _, mode := range []envoy.FailureMode{envoy.FailOpen, envoy.FailClosed} {
		r := newRPCMetrics()
		s := grpc.NewServer()
		failing := checkerFunc(func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
			return nil, status.Error(codes.Unavailable, "redis down")
		})
		as := envoy.NewAuthServer(decisionChecker{failing, &r.d}, envoy.AuthConfig{FailureMode: mode})
		authv3.RegisterAuthorizationServer(s, as)
		r.addMethods(s)
		info := &grpc.UnaryServerInfo{FullMethod: authv3.Authorization_Check_FullMethodName}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x"}}}}
		if _, err := r.unary(context.Background(), req, info, func(ctx context.Context, req any) (any, error) {
			return as.Check(ctx, req.(*authv3.CheckRequest))
		}); err != nil {
			t.Fatal(err)
		}
		wantOpen := uint64(0)
		if mode == envoy.FailOpen {
			wantOpen = 1
		}
		if got := r.failOpen.Load(); got != wantOpen {
			t.Errorf("%v: fail_open got %d, want %d", mode, got, wantOpen)
		}
		if got := r.d.errors[kindExtAuthz][codes.Unavailable].n.Load(); got != 1 {
			t.Errorf("%v: ext_authz errors got %d, want 1", mode, got)
		}
	}
}

type checkerFunc func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error)

func (f checkerFunc) Check(ctx context.Context, r *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return f(ctx, r)
}

// BenchmarkRPCMetrics: Off is the handler alone, On the same through the metrics interceptor;
// the difference is the metrics' cost per decision.
func BenchmarkRPCMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "Off"
		if on {
			name = "On"
		}
		b.Run(name, func(b *testing.B) {
			call := meteredUnary(b, on)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					call()
				}
			})
		})
	}
}

// TestTimingRPCMetricsOverhead: the metrics add at most 1 µs per decision.
func TestTimingRPCMetricsOverhead(t *testing.T) {
	if raceEnabled {
		t.Skip("timing under the race detector")
	}
	// CPU time, not wall time: on a loaded machine the test gets a fraction of a core.
	per := func(on bool) float64 {
		call := meteredUnary(t, on)
		const n = 300_000
		before := cpuTime(t)
		for range n {
			call()
		}
		return float64(cpuTime(t)-before) / n
	}
	off, on := per(false), per(true)
	t.Logf("CPU per decision: %.0f ns without metrics, %.0f ns with", off, on)
	if on-off > 1000 {
		t.Errorf("metrics add %.0f ns per decision, want at most 1000", on-off)
	}
}

// TestRPCDurationHistogramExposed records known durations into the RPC latency histogram of
// a real telemetry (its Prometheus exporter and registry) and reads them back from the
// /metrics text: each lands in the bucket whose le is the first bound at least as large (a
// bound belongs to its own bucket), the count is the +Inf bucket, the sum is exact, and the
// calls and in-flight series agree with the histogram.
func TestRPCDurationHistogramExposed(t *testing.T) {
	tel, err := newTelemetry(config.Telemetry{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tel.close)
	s := grpc.NewServer()
	wardenv1.RegisterWardenServiceServer(s, wardenv1.UnimplementedWardenServiceServer{})
	tel.rpc.addMethods(s)
	mm := tel.rpc.method(wardenv1.WardenService_CheckRateLimit_FullMethodName)
	ns := []time.Duration{
		0, 1, 50 * time.Microsecond, // le 5e-05
		50*time.Microsecond + 1, 100 * time.Microsecond, // le 0.0001
		250 * time.Microsecond,                 // le 0.00025
		time.Millisecond - 1, time.Millisecond, // le 0.001
		20*time.Millisecond + 1,          // le 0.05
		time.Second,                      // le 1
		time.Second + 1, 3 * time.Second, // +Inf
	}
	var sum time.Duration
	for _, d := range ns {
		mm.durations[codes.OK].record(d)
		sum += d
	}
	mm.durations[codes.Unavailable].record(2 * time.Millisecond)
	mm.started.Add(uint64(len(ns)) + 1 + 1) // one call still in flight

	srv := httptest.NewServer(promhttp.HandlerFor(tel.reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	_, body := httpGet(t, srv.URL)
	ok := []string{`grpc_service="warden.v1.WardenService"`, `grpc_method="CheckRateLimit"`, `grpc_code="OK"`}
	for _, want := range []struct{ le, n string }{
		{"5e-05", "3"}, {"0.0001", "5"}, {"0.00025", "6"}, {"0.0005", "6"}, {"0.001", "8"},
		{"0.0025", "8"}, {"0.005", "8"}, {"0.01", "8"}, {"0.02", "8"}, {"0.05", "9"},
		{"0.1", "9"}, {"0.25", "9"}, {"0.5", "9"}, {"1", "10"}, {"+Inf", "12"},
	} {
		if got := metricLine(body, "warden_grpc_server_duration_seconds_bucket", append(ok, `le="`+want.le+`"`)...); got != want.n {
			t.Errorf("bucket le=%s: got %q, want %s", want.le, got, want.n)
		}
	}
	if got := metricLine(body, "warden_grpc_server_duration_seconds_count", ok...); got != "12" {
		t.Errorf("count: got %q, want 12", got)
	}
	if got, err := strconv.ParseFloat(metricLine(body, "warden_grpc_server_duration_seconds_sum", ok...), 64); err != nil || math.Abs(got-sum.Seconds()) > 1e-9 {
		t.Errorf("sum: got %v (%v), want %v", got, err, sum.Seconds())
	}
	unavailable := []string{`grpc_method="CheckRateLimit"`, `grpc_code="Unavailable"`}
	for _, want := range []struct{ le, n string }{{"0.001", "0"}, {"0.0025", "1"}, {"+Inf", "1"}} {
		if got := metricLine(body, "warden_grpc_server_duration_seconds_bucket", append(unavailable, `le="`+want.le+`"`)...); got != want.n {
			t.Errorf("Unavailable bucket le=%s: got %q, want %s", want.le, got, want.n)
		}
	}
	if got := metricLine(body, "warden_grpc_server_calls_total", ok...); got != "12" {
		t.Errorf("calls: got %q, want 12", got)
	}
	if got := metricLine(body, "warden_grpc_server_in_flight", `grpc_method="CheckRateLimit"`); got != "1" {
		t.Errorf("in flight: got %q, want 1", got)
	}
	if got := metricLine(body, "warden_grpc_server_duration_seconds_count", `grpc_method="Check"`); got != "" {
		t.Errorf("a method without calls has a histogram: count %q", got)
	}
	if !strings.Contains(body, "# TYPE warden_grpc_server_duration_seconds histogram") ||
		!strings.Contains(body, `otel_scope_name="github.com/wardenhq/warden"`) {
		t.Errorf("the histogram is not exposed as before (TYPE histogram, otel_scope_name):\n%s", body)
	}
}

// TestRPCMetricsLabelsBuiltOnExport: the metrics of every method Warden serves cost the
// start almost nothing (their label sets, about 2,700 allocations when built up front, are
// built when /metrics first exports them), and an export still labels each series as before.
func TestRPCMetricsLabelsBuiltOnExport(t *testing.T) {
	s := grpc.NewServer()
	wardenv1.RegisterWardenServiceServer(s, wardenv1.UnimplementedWardenServiceServer{})
	wardenv1.RegisterAdminServiceServer(s, wardenv1.UnimplementedAdminServiceServer{})
	authv3.RegisterAuthorizationServer(s, authv3.UnimplementedAuthorizationServer{})
	rlsv3.RegisterRateLimitServiceServer(s, rlsv3.UnimplementedRateLimitServiceServer{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	var r *rpcMetrics
	// One run: the first (uncounted) warms up whatever grpc-go caches.
	n := testing.AllocsPerRun(1, func() {
		r = newRPCMetrics()
		r.addMethods(s)
	})
	// What stays: grpc-go's GetServiceInfo and, per method, its name, its metrics and its
	// map entry (about 5 allocations a method).
	t.Logf("%v allocations for %d methods", n, len(r.methods))
	if limit := float64(10 + 5*len(r.methods)); n > limit {
		t.Errorf("allocations to build the metrics of %d methods: got %v, want at most %v", len(r.methods), n, limit)
	}

	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(r))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	if err := r.observe(mp.Meter(meterName)); err != nil {
		t.Fatal(err)
	}
	info := &grpc.UnaryServerInfo{FullMethod: wardenv1.WardenService_Check_FullMethodName}
	denied := &wardenv1.CheckResponse{Reason: wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE}
	for i := range 2 { // the second export reads the sets the first one built
		if _, err := r.unary(context.Background(), nil, info, func(context.Context, any) (any, error) { return denied, nil }); err != nil {
			t.Fatal(err)
		}
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Sum[int64]:
					for _, p := range d.DataPoints {
						got[m.Name] = append(got[m.Name], p.Attributes.Encoded(attribute.DefaultEncoder())+"="+strconv.FormatInt(p.Value, 10))
					}
				case metricdata.Histogram[float64]:
					for _, p := range d.DataPoints {
						got[m.Name] = append(got[m.Name], p.Attributes.Encoded(attribute.DefaultEncoder())+" count="+strconv.FormatUint(p.Count, 10))
					}
				}
			}
		}
		for _, v := range got {
			slices.Sort(v)
		}
		calls, n := "grpc_code=OK,grpc_method=Check,grpc_service=warden.v1.WardenService", strconv.Itoa(i+1)
		want := map[string][]string{
			"warden.grpc.server.calls":     {calls + "=" + n},
			"warden.grpc.server.duration":  {calls + " count=" + n},
			"warden.decisions":             {"kind=check,outcome=denied,reason=missing_scope=" + n},
			"warden.ext_authz.fail_open":   {"=0"},
			"warden.grpc.server.in_flight": {"grpc_method=other,grpc_service=other=0"},
		}
		// Every method's in-flight gauge, zero or not.
		for svc, si := range s.GetServiceInfo() {
			for _, m := range si.Methods {
				want["warden.grpc.server.in_flight"] = append(want["warden.grpc.server.in_flight"],
					"grpc_method="+m.Name+",grpc_service="+svc+"=0")
			}
		}
		slices.Sort(want["warden.grpc.server.in_flight"])
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("export (-want +got):\n%s", diff)
		}
	}
}
