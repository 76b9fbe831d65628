package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/stats"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/internal/budget"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/streamguard"
)

// meterName is the instrumentation scope of Warden's metrics (the otel_scope_name label).
const meterName = "github.com/wardenhq/warden"

// telemetry owns the meter provider (exported for Prometheus on the admin listener) and, when
// sampling is on, a tracer provider behind the gRPC stats handler.
type telemetry struct {
	reg     *prometheus.Registry
	mp      *sdkmetric.MeterProvider
	tp      *sdktrace.TracerProvider
	meter   metric.Meter
	version atomic.Value // string
	guards  atomic.Pointer[[]*budget.Guard]
	jwt     atomic.Pointer[jwtauth.Verifier]
	apiKeys atomic.Pointer[authn.APIKeys]

	reloads metric.Int64Counter
	rpc     *rpcMetrics
}

// newTelemetry builds the providers of c. spans, when not nil, receives every sampled span
// as it ends, besides the OTLP export (for tests).
func newTelemetry(c config.Telemetry, env config.Env, spans sdktrace.SpanExporter) (*telemetry, error) {
	t := &telemetry{reg: prometheus.NewRegistry()}
	t.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	res, err := newResource()
	if err != nil {
		return nil, err
	}
	// The RPC latency histogram is aggregated by t.rpc itself, and read from it at collection.
	t.rpc = newRPCMetrics()
	exp, err := otelprom.New(otelprom.WithRegisterer(t.reg), otelprom.WithProducer(t.rpc))
	if err != nil {
		return nil, err
	}
	t.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	t.meter = t.mp.Meter(meterName)
	if c.TraceSampleRatio > 0 {
		opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(c.TraceSampleRatio)))}
		otlp, err := otlpTraceExporter(c.OTLP, env)
		if err != nil {
			return nil, err
		}
		if otlp != nil {
			opts = append(opts, sdktrace.WithBatcher(otlp))
		}
		if spans != nil {
			opts = append(opts, sdktrace.WithSyncer(spans))
		}
		t.tp = sdktrace.NewTracerProvider(opts...)
	}
	t.version.Store("")
	if t.reloads, err = t.meter.Int64Counter("warden.config.reloads",
		metric.WithDescription("Config reloads by result (ok, error).")); err != nil {
		return nil, err
	}
	// Both series exist from the start, so that increase() sees the first failure.
	for _, r := range []string{"ok", "error"} {
		t.reloads.Add(context.Background(), 0, metric.WithAttributes(attrResult(r)))
	}
	if _, err = t.meter.Int64ObservableGauge("warden.config.info",
		metric.WithDescription("1, labelled with the running config's version."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(1, metric.WithAttributes(attrVersion(t.version.Load().(string))))
			return nil
		})); err != nil {
		return nil, err
	}
	if err = t.observeGuards(); err != nil {
		return nil, err
	}
	if err = t.observeJWKS(); err != nil {
		return nil, err
	}
	if err = t.observeAPIKeyCache(); err != nil {
		return nil, err
	}
	if err = t.rpc.observe(t.meter); err != nil {
		return nil, err
	}
	return t, nil
}

// observeStreams exports the stream guard's counters.
func (t *telemetry) observeStreams(g *streamguard.Guard) error {
	if _, err := t.meter.Int64ObservableCounter("warden.grpc.streams_refused",
		metric.WithDescription("gRPC streams refused before a handler: their connection opened streams faster than server.stream_rate (HTTP/2 rapid reset)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(g.Stats().Refused))
			return nil
		})); err != nil {
		return err
	}
	_, err := t.meter.Int64ObservableCounter("warden.grpc.connections_closed",
		metric.WithDescription("gRPC connections closed by the stream guard, by reason: stream_budget (opened or reset streams faster than its budget: HTTP/2 rapid reset), penalty (a new connection from a source closed recently)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			s := g.Stats()
			o.Observe(int64(s.Closed), metric.WithAttributes(attrReasonStreamBudget))
			o.Observe(int64(s.Rejected), metric.WithAttributes(attrReasonPenalty))
			return nil
		}))
	return err
}

var (
	attrReasonStreamBudget = attribute.String("reason", "stream_budget")
	attrReasonPenalty      = attribute.String("reason", "penalty")
)

// observeGuards exports the running config's dependency guards: calls by dependency and
// outcome, and each breaker's state. They are read at collection time, so counting costs
// the request path one atomic add. A reload builds new guards, whose counts start at zero.
func (t *telemetry) observeGuards() error {
	calls, err := t.meter.Int64ObservableCounter("warden.dependency.calls",
		metric.WithDescription("Calls to a dependency (webhook_replay, apikey_store, jwt_revocations, oauth2_introspection) by outcome: ok, error, timeout (did not finish within its budget), breaker_open, no_time."))
	if err != nil {
		return err
	}
	state, err := t.meter.Int64ObservableGauge("warden.dependency.breaker_state",
		metric.WithDescription("A dependency's circuit breaker: 0 closed, 1 open, 2 half-open (probing)."))
	if err != nil {
		return err
	}
	_, err = t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		gs := t.guards.Load()
		if gs == nil {
			return nil
		}
		for _, g := range *gs {
			st := g.Stats()
			dep := attribute.String("dependency", g.Name())
			o.ObserveInt64(state, int64(st.State), metric.WithAttributes(dep))
			for i, n := range st.Outcomes {
				o.ObserveInt64(calls, int64(n), metric.WithAttributes(dep, attribute.String("outcome", budget.Outcome(i).String())))
			}
		}
		return nil
	}, calls, state)
	return err
}

// observeJWKS exports the running config's JWK Set fetches: attempts, and those refused
// (unreachable, redirected, too large, unparsable, unacceptable or empty). A reload builds a
// new verifier, whose counts start at zero.
func (t *telemetry) observeJWKS() error {
	_, err := t.meter.Int64ObservableCounter("warden.jwks.fetches",
		metric.WithDescription("JWK Set fetches over all issuers, by result: ok, refused (the last good set stays)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			v := t.jwt.Load()
			if v == nil {
				return nil
			}
			fetches, refused := v.JWKSStats()
			o.Observe(int64(fetches-refused), metric.WithAttributes(attrResult("ok")))
			o.Observe(int64(refused), metric.WithAttributes(attrResult("refused")))
			return nil
		}))
	return err
}

// observeRedisPool exports the go-redis connection pool's statistics (one client, shared
// by every Redis store): connections total, idle and stale, and the counts of pool hits,
// misses (a new connection was dialled) and timeouts (no connection within the pool
// timeout).
func (t *telemetry) observeRedisPool(c redis.UniversalClient) error {
	conns, err := t.meter.Int64ObservableGauge("warden.redis.pool.connections",
		metric.WithDescription("Redis pool connections by state: total, idle, stale (closed as stale, cumulative)."))
	if err != nil {
		return err
	}
	gets, err := t.meter.Int64ObservableCounter("warden.redis.pool.gets",
		metric.WithDescription("Redis pool connection requests by result: hit (an idle connection), miss (dialled), timeout (none within the pool timeout)."))
	if err != nil {
		return err
	}
	attr := func(k, v string) metric.ObserveOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String(k, v)))
	}
	total, idle, stale := attr("state", "total"), attr("state", "idle"), attr("state", "stale")
	hit, miss, timeout := attr("result", "hit"), attr("result", "miss"), attr("result", "timeout")
	_, err = t.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := c.PoolStats()
		o.ObserveInt64(conns, int64(st.TotalConns), total)
		o.ObserveInt64(conns, int64(st.IdleConns), idle)
		o.ObserveInt64(conns, int64(st.StaleConns), stale)
		o.ObserveInt64(gets, int64(st.Hits), hit)
		o.ObserveInt64(gets, int64(st.Misses), miss)
		o.ObserveInt64(gets, int64(st.Timeouts), timeout)
		return nil
	}, conns, gets)
	return err
}

// setJWT names the running config's JWT verifier (nil without one).
func (t *telemetry) setJWT(v *jwtauth.Verifier) { t.jwt.Store(v) }

// setGuards names the dependency guards of the config about to run.
func (t *telemetry) setGuards(gs []*budget.Guard) { t.guards.Store(&gs) }

func (t *telemetry) setConfigVersion(v string) { t.version.Store(v) }

// statsHandler traces sampled RPCs; nil when tracing is off, so that unsampled deployments
// do not pay the stats handler's few µs per call.
func (t *telemetry) statsHandler() stats.Handler {
	if t.tp == nil {
		return nil
	}
	// W3C trace context (traceparent, tracestate) from the gRPC metadata; Warden's RED
	// metrics come from its interceptor, so the handler's own meter is a no-op.
	return otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(t.tp), otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagation.TraceContext{}))
}

func (t *telemetry) close() {
	// Flushes the spans not yet exported, bounded.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = t.mp.Shutdown(ctx)
	if t.tp != nil {
		_ = t.tp.Shutdown(ctx)
	}
}

// observeAPIKeyCache exports the running config's API-key cache: authentications answered
// from it (hit) and those that waited for a key-store lookup (miss). A reload builds a new
// cache, whose counts start at zero.
func (t *telemetry) observeAPIKeyCache() error {
	hit := metric.WithAttributeSet(attribute.NewSet(attrResult("hit")))
	miss := metric.WithAttributeSet(attribute.NewSet(attrResult("miss")))
	_, err := t.meter.Int64ObservableCounter("warden.apikey.cache",
		metric.WithDescription("API-key authentications by cache result: hit (answered from the local cache, a key found or known unknown), miss (a key-store lookup)."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			k := t.apiKeys.Load()
			if k == nil {
				return nil
			}
			st := k.Stats()
			o.Observe(int64(st.CacheHits), hit)
			o.Observe(int64(st.CacheMisses), miss)
			return nil
		}))
	return err
}
