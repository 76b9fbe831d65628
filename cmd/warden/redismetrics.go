package main

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/wardenhq/warden/limiter/redisstore"
)

// pipelineBuckets resolve a rate-limit pipeline's size, 1 to redisstore's MaxBatch (128).
var pipelineBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128}

// redisRoundTrips is the rate-limit store's redisstore.Observer: the latency and the size of
// each round trip to Redis (a pipeline, per Cluster master: its Takes, and the script calls
// that carried them), recorded from the store's batcher goroutines with no attribute
// (options built once: 0 allocations).
type redisRoundTrips struct {
	duration metric.Float64Histogram
	takes    metric.Int64Histogram
	scripts  metric.Int64Histogram
}

func (r *redisRoundTrips) RoundTrip(takes, scripts int, took time.Duration) {
	ctx := context.Background()
	r.duration.Record(ctx, took.Seconds())
	r.takes.Record(ctx, int64(takes))
	r.scripts.Record(ctx, int64(scripts))
}

// redisObserver returns the Observer to give the Redis rate-limit store.
func (t *telemetry) redisObserver() (*redisRoundTrips, error) {
	r := &redisRoundTrips{}
	var err error
	if r.duration, err = t.meter.Float64Histogram("warden.redis.round_trip.duration",
		metric.WithDescription("Rate-limit store round trips to Redis (one pipeline, or one command when unbatched): time from send to answer."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	// The name stays: a "command" was a Take when every Take was its own EVALSHA.
	if r.takes, err = t.meter.Int64Histogram("warden.redis.pipeline.commands",
		metric.WithDescription("Takes (rate-limit decisions) per rate-limit store round trip to Redis: the batch size."),
		metric.WithExplicitBucketBoundaries(pipelineBuckets...)); err != nil {
		return nil, err
	}
	if r.scripts, err = t.meter.Int64Histogram("warden.redis.pipeline.scripts",
		metric.WithDescription("Script calls (EVALSHA, EVAL) per rate-limit store round trip to Redis; each carries one or more Takes."),
		metric.WithExplicitBucketBoundaries(pipelineBuckets...)); err != nil {
		return nil, err
	}
	return r, nil
}

// observeRedisStore exports the rate-limit store's round trips in flight, its holds and its
// direct sends, read at collection time.
func (t *telemetry) observeRedisStore(s *redisstore.Store) error {
	_, err := t.meter.Int64ObservableGauge("warden.redis.round_trips.in_flight",
		metric.WithDescription("Rate-limit store round trips to Redis sent and not yet answered."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(s.Stats().InFlight)
			return nil
		}))
	if err != nil {
		return err
	}
	for _, c := range []struct {
		name, desc string
		count      func(redisstore.Stats) uint64
	}{
		{"warden.redis.batch.holds", "Rate-limit store round trips whose batch was held (up to 50 µs, with pipelines in flight) for more Takes before it was sent; the round trips are the count of warden.redis.pipeline.commands.",
			func(st redisstore.Stats) uint64 { return st.Holds }},
		{"warden.redis.batch.direct", "Rate-limit store round trips that a decision sent from its own goroutine, alone, having found nothing queued and no round trip in flight (no batcher in between); of warden.redis.pipeline.commands round trips.",
			func(st redisstore.Stats) uint64 { return st.Direct }},
	} {
		if _, err := t.meter.Int64ObservableCounter(c.name, metric.WithDescription(c.desc),
			metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(int64(c.count(s.Stats())))
				return nil
			})); err != nil {
			return err
		}
	}
	return nil
}

// The key prefixes of the Redis stores, each after redis.key_prefix.
const (
	rateLimitKeys = "rl:"
	apiKeyKeys    = "apikey:" // also the invalidation channel, apikey:invalidate
	webhookKeys   = "webhook:"
	jtiKeys       = "jti:"
)

// redisCommands is a go-redis Hook that times the commands of the Redis stores other than
// the rate-limit store (which has its own round-trip histogram): the API-key store, the
// webhook replay store and the JWT revocation store, recognised by the prefix of the first
// key a command (or a pipeline's first command, after a transaction's MULTI) names. Any
// other command, the rate-limit store's scripts and pipelines included, goes on after those
// prefix comparisons (at most three), with no clock read and no record: about 30 ns of CPU
// per rate-limit round trip (BenchmarkRedisCommandHookPassThrough), which a pipeline shares
// among its decisions.
type redisCommands struct {
	duration metric.Float64Histogram
	stores   []redisStoreRole
}

// redisStoreRole is one store: its keys' prefix and its attribute set, built once.
type redisStoreRole struct {
	prefix string
	opts   []metric.RecordOption
}

// redisCommandHook returns the Hook for the stores' keys under prefix (redis.key_prefix).
// The dependency label's values are the dependency guards' names
// (warden.dependency.calls).
func (t *telemetry) redisCommandHook(prefix string) (*redisCommands, error) {
	h := &redisCommands{}
	var err error
	if h.duration, err = t.meter.Float64Histogram("warden.redis.command.duration",
		metric.WithDescription("Commands of the Redis stores other than the rate-limit store (apikey_store, webhook_replay, jwt_revocations): time from send to answer, one per command or pipeline."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		return nil, err
	}
	for _, s := range []struct{ keys, dependency string }{
		{apiKeyKeys, "apikey_store"}, {webhookKeys, "webhook_replay"}, {jtiKeys, "jwt_revocations"},
	} {
		h.stores = append(h.stores, redisStoreRole{prefix: prefix + s.keys,
			opts: []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("dependency", s.dependency)))}})
	}
	return h, nil
}

// store is the store cmd belongs to, by its first key (a script's, after its digest and
// key count), nil for another's (the rate-limit store's).
func (h *redisCommands) store(cmd redis.Cmder) *redisStoreRole {
	args := cmd.Args()
	if len(args) < 2 {
		return nil
	}
	k := 1
	if name, _ := args[0].(string); len(name) >= 4 && strings.EqualFold(name[:4], "eval") {
		k = 3 // EVAL, EVALSHA (and _RO): script, numkeys, key...
	}
	if len(args) <= k {
		return nil
	}
	key, ok := args[k].(string)
	if !ok {
		return nil
	}
	for i := range h.stores {
		if strings.HasPrefix(key, h.stores[i].prefix) {
			return &h.stores[i]
		}
	}
	return nil
}

func (h *redisCommands) record(s *redisStoreRole, start time.Time) {
	h.duration.Record(context.Background(), time.Since(start).Seconds(), s.opts...)
}

func (h *redisCommands) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *redisCommands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s := h.store(cmd)
		if s == nil {
			return next(ctx, cmd)
		}
		start := time.Now()
		err := next(ctx, cmd)
		h.record(s, start)
		return err
	}
}

func (h *redisCommands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 0 {
			return next(ctx, cmds)
		}
		first := 0
		if len(cmds) > 1 && len(cmds[0].Args()) == 1 {
			first = 1 // a transaction's MULTI
		}
		s := h.store(cmds[first])
		if s == nil {
			return next(ctx, cmds)
		}
		start := time.Now()
		err := next(ctx, cmds)
		h.record(s, start)
		return err
	}
}
