package main

import (
	"context"
	"fmt"
	"net/url"
	"runtime/debug"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients/envoy"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/limiter"
)

// buildVersion is the module version Warden was built as (a tag, a pseudo-version, or
// "(devel)" with the VCS revision when there is one).
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && (v == "" || v == "(devel)") {
			v = "(devel) " + s.Value
		}
	}
	return v
}

// newResource is Warden's OpenTelemetry resource: service.name warden and its version,
// overridden by OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES when set.
func newResource() (*resource.Resource, error) {
	return resource.New(context.Background(),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", "warden"), attribute.String("service.version", buildVersion())),
		resource.WithFromEnv())
}

// otlpTraceExporter returns the OTLP exporter of c, nil when neither c nor the environment
// names an endpoint. The exporter reads the OTEL_EXPORTER_OTLP_* variables itself (headers,
// timeout, TLS, compression); c's fields take precedence.
func otlpTraceExporter(c config.OTLP, env config.Env) (sdktrace.SpanExporter, error) {
	lookup := func(keys ...string) string {
		for _, k := range keys {
			if v, ok := env(k); ok && v != "" {
				return v
			}
		}
		return ""
	}
	if c.Endpoint == "" && lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT") == "" {
		return nil, nil
	}
	protocol := c.Protocol
	if protocol == "" {
		protocol = lookup("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	headers := map[string]string{}
	for _, h := range c.Headers {
		headers[h.Name] = h.Value.Reveal()
	}
	ctx := context.Background()
	switch protocol {
	case "", "grpc":
		var opts []otlptracegrpc.Option
		if c.Endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(c.Endpoint))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http/protobuf":
		var opts []otlptracehttp.Option
		if c.Endpoint != "" {
			u, err := url.Parse(c.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("telemetry.otlp.endpoint: %w", err)
			}
			if u.Path == "" || u.Path == "/" {
				u.Path = "/v1/traces" // as for OTEL_EXPORTER_OTLP_ENDPOINT
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
		}
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("telemetry: OTLP protocol %q is not supported (grpc or http/protobuf)", protocol)
}

// tracedChecker joins the ext_authz decision to the trace of the HTTP request Envoy asks
// about: when that request carries a W3C traceparent (Envoy forwards the client's headers),
// the decision gets a span in that trace, linked to the gRPC server span (whose parent is
// Envoy's own trace context, from the gRPC metadata, when Envoy traces). Installed only when
// tracing is on.
type tracedChecker struct {
	envoy.Checker
	tracer trace.Tracer
}

var traceContext propagation.TraceContext

func (c tracedChecker) Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	resp, _, err := c.check(ctx, req, false)
	return resp, err
}

// CheckPooled is Check through the checker's CheckPooled (envoy.PooledChecker), if it has one.
func (c tracedChecker) CheckPooled(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, interface{ Release() }, error) {
	return c.check(ctx, req, true)
}

func (c tracedChecker) check(ctx context.Context, req *wardenv1.CheckRequest, pooled bool) (*wardenv1.CheckResponse, interface{ Release() }, error) {
	h := req.GetHttp().GetHeaders()
	tp := h["traceparent"]
	if !sampledTraceparent(tp) {
		// No trace, or one its client chose not to sample: nothing to join, nothing parsed.
		return checkPooled(ctx, c.Checker, req, pooled)
	}
	remote := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(h)))
	if !remote.IsValid() {
		return checkPooled(ctx, c.Checker, req, pooled)
	}
	server := trace.SpanContextFromContext(ctx)
	ctx, span := c.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, remote), "warden.ext_authz.decide",
		trace.WithLinks(trace.Link{SpanContext: server}), trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	resp, release, err := checkPooled(ctx, c.Checker, req, pooled)
	if err != nil {
		span.SetStatus(codes.Error, status.Code(err).String())
	}
	return resp, release, err
}

// sampledTraceparent reports whether a W3C traceparent header value
// (version-traceid-parentid-flags) has its sampled flag set, without parsing the rest: a
// request whose client does not sample costs no extraction.
func sampledTraceparent(v string) bool {
	const minLen = 2 + 1 + 32 + 1 + 16 + 1 + 2
	if len(v) < minLen {
		return false
	}
	f := v[minLen-1]
	var n byte
	switch {
	case f >= '0' && f <= '9':
		n = f - '0'
	case f >= 'a' && f <= 'f':
		n = f - 'a' + 10
	default:
		return false
	}
	return n&1 == 1
}

// tracer is Warden's tracer, nil when tracing is off.
func (t *telemetry) tracer() trace.Tracer {
	if t.tp == nil {
		return nil
	}
	return t.tp.Tracer("github.com/wardenhq/warden")
}

// Attributes of the Envoy adapters' and the Redis store's spans (see service's for the
// decisions'): no principal, key or descriptor value.
const (
	attrOutcome    = attribute.Key("warden.outcome")
	attrHTTPStatus = attribute.Key("http.response.status_code")
	attrFailOpen   = attribute.Key("warden.ext_authz.fail_open")
	attrLimits     = attribute.Key("warden.redis.limits")
	attrBatch      = attribute.Key("warden.redis.batch_size")
)

// tracedAuth gives a sampled ext_authz call a span for the adapter's decision
// (warden.ext_authz), the parent of Warden's decision spans; an unsampled call goes straight
// through. Installed only when tracing is on.
type tracedAuth struct {
	authv3.AuthorizationServer
	tracer trace.Tracer
}

func (s tracedAuth) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return s.AuthorizationServer.Check(ctx, req)
	}
	ctx, sp := s.tracer.Start(ctx, "warden.ext_authz")
	defer sp.End()
	resp, err := s.AuthorizationServer.Check(ctx, req)
	switch {
	case err != nil:
		sp.SetAttributes(attrOutcome.String("error"))
		sp.SetStatus(codes.Error, status.Code(err).String())
	case resp.GetDeniedResponse() != nil || resp.GetStatus().GetCode() != 0:
		sp.SetAttributes(attrOutcome.String("denied"), attrHTTPStatus.Int(int(resp.GetDeniedResponse().GetStatus().GetCode())))
	default:
		sp.SetAttributes(attrOutcome.String("allowed"), attrHTTPStatus.Int(200), attrFailOpen.Bool(failedOpen(resp)))
	}
	return resp, err
}

// tracedRLS gives a sampled RLS call a span for the adapter's decision (warden.rls).
type tracedRLS struct {
	rlsv3.RateLimitServiceServer
	tracer trace.Tracer
}

func (s tracedRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return s.RateLimitServiceServer.ShouldRateLimit(ctx, req)
	}
	ctx, sp := s.tracer.Start(ctx, "warden.rls", trace.WithAttributes(attribute.String("warden.ratelimit.domain", req.GetDomain())))
	defer sp.End()
	resp, err := s.RateLimitServiceServer.ShouldRateLimit(ctx, req)
	switch {
	case err != nil:
		sp.SetAttributes(attrOutcome.String("error"))
		sp.SetStatus(codes.Error, status.Code(err).String())
	case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
		sp.SetAttributes(attrOutcome.String("over_limit"))
	default:
		sp.SetAttributes(attrOutcome.String(strings.ToLower(resp.GetOverallCode().String())))
	}
	return resp, err
}

// tracedStore gives a sampled call's Take on the rate-limit store (Redis) a span
// (warden.redis.take): the limits it checks, its outcome and, from the store's
// TakeAnswered hook, the size of the pipeline it went in. An unsampled Take goes straight
// through. Installed only when tracing is on.
type tracedStore struct {
	limiter.Store
	tracer trace.Tracer
}

func (s tracedStore) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return s.Store.Take(ctx, tag, hits, out)
	}
	ctx, sp := s.tracer.Start(ctx, "warden.redis.take", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system.name", "redis"), attrLimits.Int(len(hits))))
	defer sp.End()
	ok, err := s.Store.Take(ctx, tag, hits, out)
	switch {
	case err != nil:
		sp.SetAttributes(attrOutcome.String("error"))
		sp.SetStatus(codes.Error, "store error")
	case ok:
		sp.SetAttributes(attrOutcome.String("allowed"))
	default:
		sp.SetAttributes(attrOutcome.String("over_limit"))
	}
	return ok, err
}

// TakeAnswered is the Redis store's hook (redisstore.Options.Observer): it records on the
// Take's span the number of Takes in the pipeline that answered it.
func (r *redisRoundTrips) TakeAnswered(ctx context.Context, batch int) {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		sp.SetAttributes(attrBatch.Int(batch))
	}
}

// traceStore wraps s in a tracedStore that keeps what the limiter asks of s besides Take
// (Sharded, Resetter).
func traceStore(s limiter.Store, tr trace.Tracer) limiter.Store {
	t := tracedStore{s, tr}
	sh, isSharded := s.(limiter.Sharded)
	rs, isResetter := s.(limiter.Resetter)
	switch {
	case isSharded && isResetter:
		return struct {
			tracedStore
			limiter.Sharded
			limiter.Resetter
		}{t, sh, rs}
	case isSharded:
		return struct {
			tracedStore
			limiter.Sharded
		}{t, sh}
	case isResetter:
		return struct {
			tracedStore
			limiter.Resetter
		}{t, rs}
	}
	return t
}
