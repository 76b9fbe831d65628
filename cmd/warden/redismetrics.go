package main

import (
	"context"
	"time"

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

// observeRedisStore exports the rate-limit store's round trips in flight, read at collection
// time.
func (t *telemetry) observeRedisStore(s *redisstore.Store) error {
	_, err := t.meter.Int64ObservableGauge("warden.redis.round_trips.in_flight",
		metric.WithDescription("Rate-limit store round trips to Redis sent and not yet answered."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(s.Stats().InFlight)
			return nil
		}))
	return err
}
