package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients/envoy"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// rpcMetrics are the RED metrics of every gRPC method Warden serves, and its decisions:
//
//   - warden.grpc.server.calls{grpc_service, grpc_method, grpc_code}: finished calls
//   - warden.grpc.server.duration{grpc_service, grpc_method, grpc_code}: their latency
//     (seconds; buckets from 50 µs to 1 s)
//   - warden.grpc.server.in_flight{grpc_service, grpc_method}: calls being served
//   - warden.decisions{kind, outcome, reason}: kind authenticate, authorize, rate_limit,
//     webhook, check, ext_authz, rls; outcome allowed, denied (reason: the DenyReason, in
//     snake case without its prefix) or error (Warden could not decide; reason: the gRPC
//     code in snake case); reason none when allowed
//   - warden.ext_authz.fail_open: ext_authz answers that let a request through because
//     Warden could not decide and the failure mode was open
//
// Every label value comes from a closed set fixed at start (the registered methods, the
// DenyReason and gRPC code enums): a caller cannot create one. The request path pays one
// histogram record (its attribute set built once) and atomic adds; the counters are read
// when /metrics is scraped. Nothing allocates.
type rpcMetrics struct {
	duration metric.Float64Histogram
	failOpen atomic.Uint64
	d        decisionMetrics
	// methods is filled by addMethods before the server serves and only read afterwards.
	methods map[string]*methodMetrics
	other   *methodMetrics
}

// durationBuckets resolve 50 µs to 250 ms (Envoy's timeouts are 5–200 ms), and up to 1 s.
var durationBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1,
}

// numCodes is the number of gRPC codes (OK … Unauthenticated); others count as Unknown.
const numCodes = int(codes.Unauthenticated) + 1

type methodMetrics struct {
	kind     decisionKind
	calls    [numCodes]atomic.Uint64
	inFlight atomic.Int64
	// The attribute sets, each option in its own slice (passed with "...": a variadic call
	// building the slice would allocate on every call).
	callsAttrs    [numCodes][]metric.ObserveOption
	durationAttrs [numCodes][]metric.RecordOption
	inFlightAttrs []metric.ObserveOption
}

// decisionKind is what a method decides; kindNone for the others (admin, health, ...).
type decisionKind int

const (
	kindNone decisionKind = iota
	kindAuthenticate
	kindAuthorize
	kindRateLimit
	kindWebhook
	kindCheck
	kindExtAuthz
	kindRLS
	numKinds
)

var kindNames = [numKinds]string{"", "authenticate", "authorize", "rate_limit", "webhook", "check", "ext_authz", "rls"}

// methodKinds maps the deciding methods to their kind.
var methodKinds = map[string]decisionKind{
	wardenv1.WardenService_Authenticate_FullMethodName:    kindAuthenticate,
	wardenv1.WardenService_Authorize_FullMethodName:       kindAuthorize,
	wardenv1.WardenService_CheckRateLimit_FullMethodName:  kindRateLimit,
	wardenv1.WardenService_VerifyWebhook_FullMethodName:   kindWebhook,
	wardenv1.WardenService_Check_FullMethodName:           kindCheck,
	authv3.Authorization_Check_FullMethodName:             kindExtAuthz,
	rlsv3.RateLimitService_ShouldRateLimit_FullMethodName: kindRLS,
}

// decisionMetrics counts decisions by kind, outcome and reason.
type decisionMetrics struct {
	allowed [numKinds]counted
	// denied is indexed by DenyReason; an enum value this build does not know counts as
	// unspecified.
	denied [numKinds][]counted
	errors [numKinds][numCodes]counted
}

// counted is one counter of a label set.
type counted struct {
	n     atomic.Uint64
	attrs []metric.ObserveOption
}

func (c *counted) observe(o metric.Observer, inst metric.Int64Observable) {
	if n := c.n.Load(); n > 0 {
		o.ObserveInt64(inst, int64(n), c.attrs...)
	}
}

// maxDenyReason is the largest DenyReason value.
var maxDenyReason = func() int32 {
	var m int32
	for v := range wardenv1.DenyReason_name {
		m = max(m, v)
	}
	return m
}()

func newRPCMetrics(m metric.Meter) (*rpcMetrics, error) {
	r := &rpcMetrics{methods: map[string]*methodMetrics{}}
	var err error
	if r.duration, err = m.Float64Histogram("warden.grpc.server.duration",
		metric.WithDescription("Time to serve a gRPC call, from the handler's start to its return, by service, method and gRPC code."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	calls, err := m.Int64ObservableCounter("warden.grpc.server.calls",
		metric.WithDescription("gRPC calls served, by service, method and gRPC code."), metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	inFlight, err := m.Int64ObservableUpDownCounter("warden.grpc.server.in_flight",
		metric.WithDescription("gRPC calls being served."), metric.WithUnit("{call}"))
	if err != nil {
		return nil, err
	}
	failOpen, err := m.Int64ObservableCounter("warden.ext_authz.fail_open",
		metric.WithDescription("ext_authz answers that allowed a request Warden could not decide (failure mode open)."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	decisions, err := m.Int64ObservableCounter("warden.decisions",
		metric.WithDescription("Decisions by kind (authenticate, authorize, rate_limit, webhook, check, ext_authz, rls), outcome (allowed, denied, error) and reason (a DenyReason, or the gRPC code of an error)."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	for k := kindAuthenticate; k < numKinds; k++ {
		kind := attribute.String("kind", kindNames[k])
		r.d.allowed[k].attrs = observeOpts(kind, attribute.String("outcome", "allowed"), attribute.String("reason", "none"))
		r.d.denied[k] = make([]counted, maxDenyReason+1)
		for v := range r.d.denied[k] {
			name, ok := wardenv1.DenyReason_name[int32(v)]
			if !ok {
				name = wardenv1.DenyReason_DENY_REASON_UNSPECIFIED.String()
			}
			reason := strings.ToLower(strings.TrimPrefix(name, "DENY_REASON_"))
			r.d.denied[k][v].attrs = observeOpts(kind, attribute.String("outcome", "denied"), attribute.String("reason", reason))
		}
		for c := range numCodes {
			r.d.errors[k][c].attrs = observeOpts(kind, attribute.String("outcome", "error"), attribute.String("reason", snake(codes.Code(c).String())))
		}
	}
	r.other = newMethod("other", "other", kindNone)
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, mm := range r.all() {
			o.ObserveInt64(inFlight, mm.inFlight.Load(), mm.inFlightAttrs...)
			for c := range mm.calls {
				if n := mm.calls[c].Load(); n > 0 {
					o.ObserveInt64(calls, int64(n), mm.callsAttrs[c]...)
				}
			}
		}
		for k := range r.d.allowed {
			r.d.allowed[k].observe(o, decisions)
			for i := range r.d.denied[k] {
				r.d.denied[k][i].observe(o, decisions)
			}
			for i := range r.d.errors[k] {
				r.d.errors[k][i].observe(o, decisions)
			}
		}
		o.ObserveInt64(failOpen, int64(r.failOpen.Load()))
		return nil
	}, calls, inFlight, failOpen, decisions)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// all returns every method's metrics, other last.
func (r *rpcMetrics) all() []*methodMetrics {
	all := make([]*methodMetrics, 0, len(r.methods)+1)
	for _, mm := range r.methods {
		all = append(all, mm)
	}
	return append(all, r.other)
}

func observeOpts(kv ...attribute.KeyValue) []metric.ObserveOption {
	return []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

// snake turns a gRPC code's name (DeadlineExceeded, OK) into deadline_exceeded, ok.
func snake(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range s {
		if unicode.IsUpper(r) {
			if prevLower {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
			prevLower = false
		} else {
			prevLower = true
		}
		b.WriteRune(r)
	}
	return b.String()
}

func newMethod(service, method string, kind decisionKind) *methodMetrics {
	mm := &methodMetrics{kind: kind}
	svc, meth := attribute.String("grpc_service", service), attribute.String("grpc_method", method)
	mm.inFlightAttrs = observeOpts(svc, meth)
	for c := range numCodes {
		set := attribute.NewSet(svc, meth, attribute.String("grpc_code", codes.Code(c).String()))
		mm.callsAttrs[c] = []metric.ObserveOption{metric.WithAttributeSet(set)}
		mm.durationAttrs[c] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	return mm
}

// addMethods adds the methods of every service registered on s. Call it after registering
// them, before s serves.
func (r *rpcMetrics) addMethods(s *grpc.Server) {
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := r.methods[full]; !ok {
				r.methods[full] = newMethod(svc, m.Name, methodKinds[full])
			}
		}
	}
}

func (r *rpcMetrics) method(full string) *methodMetrics {
	if mm, ok := r.methods[full]; ok {
		return mm
	}
	return r.other
}

func codeIndex(err error) int {
	c := status.Code(err)
	if int(c) >= numCodes {
		c = codes.Unknown
	}
	return int(c)
}

func (r *rpcMetrics) finish(ctx context.Context, mm *methodMetrics, start time.Time, err error) {
	c := codeIndex(err)
	r.duration.Record(ctx, time.Since(start).Seconds(), mm.durationAttrs[c]...)
	mm.calls[c].Add(1)
	mm.inFlight.Add(-1)
}

// unary is the server's first interceptor: it times the call and counts its decision.
func (r *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mm, start := r.begin(info.FullMethod)
	resp, err := handler(ctx, req)
	r.end(ctx, mm, start, resp, err)
	return resp, err
}

// begin and end are unary's halves, for unaryStack: begin counts the call in flight and
// starts its clock; end times it and counts its decision.
func (r *rpcMetrics) begin(fullMethod string) (*methodMetrics, time.Time) {
	mm := r.method(fullMethod)
	mm.inFlight.Add(1)
	return mm, time.Now()
}

func (r *rpcMetrics) end(ctx context.Context, mm *methodMetrics, start time.Time, resp any, err error) {
	r.finish(ctx, mm, start, err)
	if mm.kind != kindNone {
		r.decision(mm.kind, resp, err)
	}
}

func (r *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	mm := r.method(info.FullMethod)
	mm.inFlight.Add(1)
	start := time.Now()
	err := handler(srv, ss)
	r.finish(ss.Context(), mm, start, err)
	return err
}

// decision counts the decision a deciding method answered. ext_authz decisions are counted
// by decisionChecker, which sees Warden's reason; here only its fail-opens are.
func (r *rpcMetrics) decision(k decisionKind, resp any, err error) {
	if err != nil {
		r.d.errors[k][codeIndex(err)].n.Add(1)
		return
	}
	switch m := resp.(type) {
	case *wardenv1.AuthenticateResponse:
		r.d.record(k, m.GetAuthenticated(), m.GetReason())
	case *wardenv1.AuthorizeResponse:
		r.d.record(k, m.GetAllowed(), m.GetReason())
	case *wardenv1.CheckRateLimitResponse:
		r.d.record(k, m.GetAllowed(), wardenv1.DenyReason_DENY_REASON_RATE_LIMITED)
	case *wardenv1.VerifyWebhookResponse:
		r.d.record(k, m.GetValid(), m.GetReason())
	case *wardenv1.CheckResponse:
		r.d.record(k, m.GetAllowed(), m.GetReason())
	case *rlsv3.RateLimitResponse:
		r.d.record(k, m.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT, wardenv1.DenyReason_DENY_REASON_RATE_LIMITED)
	case *authv3.CheckResponse:
		if failedOpen(m) {
			r.failOpen.Add(1)
		}
	}
}

// failureModeAllowedHeader is the header the ext_authz adapter adds to a fail-open allow
// (Envoy's own name for it).
const failureModeAllowedHeader = "x-envoy-auth-failure-mode-allowed"

// failedOpen reports whether an ext_authz answer is the failure mode's allow.
func failedOpen(m *authv3.CheckResponse) bool {
	if m.GetStatus().GetCode() != int32(codes.OK) {
		return false
	}
	for _, h := range m.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == failureModeAllowedHeader {
			return true
		}
	}
	return false
}

func (d *decisionMetrics) record(k decisionKind, allowed bool, reason wardenv1.DenyReason) {
	if allowed {
		d.allowed[k].n.Add(1)
		return
	}
	if reason < 0 || int32(reason) > maxDenyReason {
		reason = wardenv1.DenyReason_DENY_REASON_UNSPECIFIED
	}
	d.denied[k][reason].n.Add(1)
}

// decisionChecker counts the ext_authz adapter's decisions, with Warden's reason, which the
// Envoy answer does not carry.
type decisionChecker struct {
	envoy.Checker
	d *decisionMetrics
}

func (c decisionChecker) Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	resp, err := c.Checker.Check(ctx, req)
	if err != nil {
		c.d.errors[kindExtAuthz][codeIndex(err)].n.Add(1)
	} else {
		c.d.record(kindExtAuthz, resp.GetAllowed(), resp.GetReason())
	}
	return resp, err
}
