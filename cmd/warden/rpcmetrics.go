package main

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
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
// DenyReason and gRPC code enums): a caller cannot create one. Each label set is built the
// first time it is exported (see lazyLabels): most never see a call, and building all of
// them at start took some 3,500 allocations and their heap. A call costs the request path
// a map lookup, two reads of the monotonic clock and four atomic adds (started, a duration
// bucket, the duration sum, the decision); nothing allocates. Everything is read when
// /metrics is scraped: the counters and the in-flight gauge by observable instruments (see
// observe), the latency histogram by r itself, an OpenTelemetry metric.Producer given to the
// exporter, because a synchronous OpenTelemetry histogram's Record cost 0.3–0.45 µs a call
// (its attribute-set lookup), more than the rest of the interceptor together.
type rpcMetrics struct {
	// base anchors the calls' clock: time.Since(base) reads only the monotonic clock, where
	// time.Now reads the wall clock too.
	base     time.Time
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

// numDurationBuckets is len(durationBuckets).
const numDurationBuckets = 14

// durationBounds are durationBuckets in nanoseconds.
var durationBounds = func() (b [numDurationBuckets]time.Duration) {
	if len(durationBuckets) != numDurationBuckets {
		panic("numDurationBuckets is not len(durationBuckets)")
	}
	for i, s := range durationBuckets {
		b[i] = time.Duration(math.Round(s * 1e9))
	}
	return b
}()

// durationHist is one latency histogram over durationBuckets: a count per bucket (the last
// one for durations above every bound) and the sum in nanoseconds, each an atomic cell, so
// that recording is lock-free and allocates nothing. Its count is its buckets' total, so the
// +Inf bucket and the count always agree.
type durationHist struct {
	buckets  [numDurationBuckets + 1]atomic.Uint64
	sumNanos atomic.Uint64
}

// bucket is the index of the bucket of d: the first whose bound is at least d (a bound is
// its bucket's upper end, inclusive, as Prometheus's le and OpenTelemetry's explicit
// buckets), numDurationBuckets above them all. Most calls take less than the first bound,
// so a linear search is the fastest.
func bucket(d time.Duration) int {
	i := 0
	for i < numDurationBuckets && d > durationBounds[i] {
		i++
	}
	return i
}

func (h *durationHist) record(d time.Duration) {
	d = max(d, 0)
	h.buckets[bucket(d)].Add(1)
	h.sumNanos.Add(uint64(d))
}

// count is the number of durations recorded.
func (h *durationHist) count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// numCodes is the number of gRPC codes (OK … Unauthenticated); others count as Unknown.
const numCodes = int(codes.Unauthenticated) + 1

type methodMetrics struct {
	kind decisionKind
	// started counts the calls begun: in flight are those begun and not yet timed.
	started   atomic.Uint64
	durations [numCodes]durationHist
	// service and method are the labels of the method's series; byCode (grpc_code added, for
	// the calls and the histogram) and inFlightLabels are their sets, built when exported.
	service, method string
	byCode          [numCodes]lazyLabels
	inFlightLabels  lazyLabels
}

// labels is one label set as the exporter takes it.
type labels struct {
	set attribute.Set
	// opts holds the set as an observe option, in a slice of its own: passed with "...", a
	// variadic call building the slice would allocate.
	opts []metric.ObserveOption
}

func newLabels(kv ...attribute.KeyValue) *labels {
	set := attribute.NewSet(kv...)
	return &labels{set: set, opts: []metric.ObserveOption{metric.WithAttributeSet(set)}}
}

// lazyLabels is a label set built by the first export that needs it: only the collection
// of /metrics reads it, never a call. Its zero value is unbuilt. Safe for concurrent use:
// collections racing to build it build equal sets, and all of them keep the first stored.
type lazyLabels struct{ p atomic.Pointer[labels] }

func (l *lazyLabels) get(build func() *labels) *labels {
	if p := l.p.Load(); p != nil {
		return p
	}
	l.p.CompareAndSwap(nil, build())
	return l.p.Load()
}

// codeLabels is the label set of mm's calls that ended with code c.
func (mm *methodMetrics) codeLabels(c int) *labels {
	return mm.byCode[c].get(func() *labels {
		return newLabels(attribute.String("grpc_service", mm.service), attribute.String("grpc_method", mm.method),
			attribute.String("grpc_code", codes.Code(c).String()))
	})
}

// calls is the number of calls finished with code c.
func (mm *methodMetrics) calls(c int) uint64 { return mm.durations[c].count() }

// inFlight is the number of calls begun and not finished. The finished ones are read first,
// so that a call finishing meanwhile can make it one too high, never negative.
func (mm *methodMetrics) inFlight() int64 {
	var done uint64
	for c := range mm.durations {
		done += mm.durations[c].count()
	}
	return int64(mm.started.Load() - done)
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

// counted is one counter of a label set, built by its first export.
type counted struct {
	n      atomic.Uint64
	labels lazyLabels
}

// observe exports c, when it has counted anything, as kind's decisions of outcome and reason
// (a function, called only to build the set the first time).
func (c *counted) observe(o metric.Observer, inst metric.Int64Observable, k decisionKind, outcome string, reason func() string) {
	n := c.n.Load()
	if n == 0 {
		return
	}
	l := c.labels.get(func() *labels {
		return newLabels(attribute.String("kind", kindNames[k]), attribute.String("outcome", outcome), attribute.String("reason", reason()))
	})
	o.ObserveInt64(inst, int64(n), l.opts...)
}

// observe exports every decision counted.
func (d *decisionMetrics) observe(o metric.Observer, inst metric.Int64Observable) {
	for k := kindAuthenticate; k < numKinds; k++ {
		d.allowed[k].observe(o, inst, k, "allowed", func() string { return "none" })
		for v := range d.denied[k] {
			d.denied[k][v].observe(o, inst, k, "denied", func() string { return denyReasonLabel(v) })
		}
		for c := range d.errors[k] {
			d.errors[k][c].observe(o, inst, k, "error", func() string { return snake(codes.Code(c).String()) })
		}
	}
}

// denyReasonLabel is the reason label of DenyReason v: its name in snake case without its
// prefix (unspecified for a value this build does not know).
func denyReasonLabel(v int) string {
	name, ok := wardenv1.DenyReason_name[int32(v)]
	if !ok {
		name = wardenv1.DenyReason_DENY_REASON_UNSPECIFIED.String()
	}
	return strings.ToLower(strings.TrimPrefix(name, "DENY_REASON_"))
}

// maxDenyReason is the largest DenyReason value.
var maxDenyReason = func() int32 {
	var m int32
	for v := range wardenv1.DenyReason_name {
		m = max(m, v)
	}
	return m
}()

// newRPCMetrics returns the metrics, with no method yet (see addMethods). Give it to the
// exporter as a Producer, for the latency histogram, and call observe for the rest.
func newRPCMetrics() *rpcMetrics {
	r := &rpcMetrics{base: time.Now(), methods: map[string]*methodMetrics{}}
	for k := kindAuthenticate; k < numKinds; k++ {
		r.d.denied[k] = make([]counted, maxDenyReason+1)
	}
	r.other = &methodMetrics{kind: kindNone, service: "other", method: "other"}
	return r
}

// observe exports, through m, the counters and the in-flight gauge: everything but the
// latency histogram, which r produces itself.
func (r *rpcMetrics) observe(m metric.Meter) error {
	calls, err := m.Int64ObservableCounter("warden.grpc.server.calls",
		metric.WithDescription("gRPC calls served, by service, method and gRPC code."), metric.WithUnit("{call}"))
	if err != nil {
		return err
	}
	inFlight, err := m.Int64ObservableUpDownCounter("warden.grpc.server.in_flight",
		metric.WithDescription("gRPC calls being served."), metric.WithUnit("{call}"))
	if err != nil {
		return err
	}
	failOpen, err := m.Int64ObservableCounter("warden.ext_authz.fail_open",
		metric.WithDescription("ext_authz answers that allowed a request Warden could not decide (failure mode open)."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return err
	}
	decisions, err := m.Int64ObservableCounter("warden.decisions",
		metric.WithDescription("Decisions by kind (authenticate, authorize, rate_limit, webhook, check, ext_authz, rls), outcome (allowed, denied, error) and reason (a DenyReason, or the gRPC code of an error)."),
		metric.WithUnit("{decision}"))
	if err != nil {
		return err
	}
	_, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, mm := range r.all() {
			l := mm.inFlightLabels.get(func() *labels {
				return newLabels(attribute.String("grpc_service", mm.service), attribute.String("grpc_method", mm.method))
			})
			o.ObserveInt64(inFlight, mm.inFlight(), l.opts...)
			for c := range numCodes {
				if n := mm.calls(c); n > 0 {
					o.ObserveInt64(calls, int64(n), mm.codeLabels(c).opts...)
				}
			}
		}
		r.d.observe(o, decisions)
		o.ObserveInt64(failOpen, int64(r.failOpen.Load()))
		return nil
	}, calls, inFlight, failOpen, decisions)
	return err
}

// Produce is the latency histogram, warden.grpc.server.duration, as OpenTelemetry metric
// data of the meter's scope: one cumulative point per method and code that has seen a call,
// as the SDK's histogram exported.
func (r *rpcMetrics) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	var points []metricdata.HistogramDataPoint[float64]
	for _, mm := range r.all() {
		for c := range numCodes {
			h := &mm.durations[c]
			counts := make([]uint64, numDurationBuckets+1)
			var n uint64
			for i := range counts {
				counts[i] = h.buckets[i].Load()
				n += counts[i]
			}
			if n == 0 {
				continue
			}
			points = append(points, metricdata.HistogramDataPoint[float64]{
				Attributes: mm.codeLabels(c).set, StartTime: r.base, Time: now,
				Count: n, Bounds: durationBuckets, BucketCounts: counts,
				Sum: float64(h.sumNanos.Load()) / 1e9,
			})
		}
	}
	return []metricdata.ScopeMetrics{{
		Scope: instrumentation.Scope{Name: meterName},
		Metrics: []metricdata.Metrics{{
			Name:        "warden.grpc.server.duration",
			Description: "Time to serve a gRPC call, from the handler's start to its return, by service, method and gRPC code.",
			Unit:        "s",
			Data:        metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: points},
		}},
	}}, nil
}

// all returns every method's metrics, other last.
func (r *rpcMetrics) all() []*methodMetrics {
	all := make([]*methodMetrics, 0, len(r.methods)+1)
	for _, mm := range r.methods {
		all = append(all, mm)
	}
	return append(all, r.other)
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

// addMethods adds the methods of every service registered on s. Call it after registering
// them, before s serves.
func (r *rpcMetrics) addMethods(s *grpc.Server) {
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if _, ok := r.methods[full]; !ok {
				r.methods[full] = &methodMetrics{kind: methodKinds[full], service: svc, method: m.Name}
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

// finish times a call begun at start (see begin) that ended with err.
func (r *rpcMetrics) finish(mm *methodMetrics, start time.Duration, err error) {
	mm.durations[codeIndex(err)].record(time.Since(r.base) - start)
}

// unary is the metrics as an interceptor of their own: it times the call and counts its
// decision. The server runs them in unaryStack.
func (r *rpcMetrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mm, start := r.begin(info.FullMethod)
	resp, err := handler(ctx, req)
	r.end(mm, start, resp, err)
	return resp, err
}

// begin and end are unary's halves, for unaryStack: begin counts the call in flight and
// starts its clock (the monotonic time since r.base); end times it and counts its decision.
func (r *rpcMetrics) begin(fullMethod string) (*methodMetrics, time.Duration) {
	mm := r.method(fullMethod)
	mm.started.Add(1)
	return mm, time.Since(r.base)
}

func (r *rpcMetrics) end(mm *methodMetrics, start time.Duration, resp any, err error) {
	r.finish(mm, start, err)
	if mm.kind != kindNone {
		r.decision(mm.kind, resp, err)
	}
}

func (r *rpcMetrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	mm, start := r.begin(info.FullMethod)
	err := handler(srv, ss)
	r.finish(mm, start, err)
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
	c.count(resp, err)
	return resp, err
}

// count records one decision of the adapter, or its error.
func (c decisionChecker) count(resp *wardenv1.CheckResponse, err error) {
	if err != nil {
		c.d.errors[kindExtAuthz][codeIndex(err)].n.Add(1)
	} else {
		c.d.record(kindExtAuthz, resp.GetAllowed(), resp.GetReason())
	}
}

// CheckPooled is Check through the checker's CheckPooled (envoy.PooledChecker: the
// in-process Warden), counted the same way.
func (c decisionChecker) CheckPooled(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, interface{ Release() }, error) {
	resp, release, err := checkPooled(ctx, c.Checker, req, true)
	c.count(resp, err)
	return resp, release, err
}

// checkPooled asks ch through its CheckPooled when it has one and pooled is set, else
// through Check (no release).
func checkPooled(ctx context.Context, ch envoy.Checker, req *wardenv1.CheckRequest, pooled bool) (*wardenv1.CheckResponse, interface{ Release() }, error) {
	if pc, ok := ch.(envoy.PooledChecker); ok && pooled {
		return pc.CheckPooled(ctx, req)
	}
	resp, err := ch.Check(ctx, req)
	return resp, nil, err
}
