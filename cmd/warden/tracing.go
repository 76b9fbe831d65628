package main

import (
	"context"
	"fmt"
	"net/url"
	"runtime/debug"

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
	h := req.GetHttp().GetHeaders()
	if h["traceparent"] == "" {
		return c.Checker.Check(ctx, req)
	}
	remote := trace.SpanContextFromContext(traceContext.Extract(context.Background(), propagation.MapCarrier(h)))
	if !remote.IsValid() {
		return c.Checker.Check(ctx, req)
	}
	server := trace.SpanContextFromContext(ctx)
	ctx, span := c.tracer.Start(trace.ContextWithRemoteSpanContext(ctx, remote), "warden.ext_authz.decide",
		trace.WithLinks(trace.Link{SpanContext: server}), trace.WithSpanKind(trace.SpanKindInternal))
	defer span.End()
	resp, err := c.Checker.Check(ctx, req)
	if err != nil {
		span.SetStatus(codes.Error, status.Code(err).String())
	}
	return resp, err
}
