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
// each round trip to Redis (a pipeline, per Cluster master), recorded from the store's
// batcher goroutines with no attribute (options built once: 0 allocations).
type redisRoundTrips struct {
	duration metric.Float64Histogram
	commands metric.Int64Histogram
}

func (r *redisRoundTrips) RoundTrip(commands int, took time.Duration) {
	ctx := context.Background()
	r.duration.Record(ctx, took.Seconds())
	r.commands.Record(ctx, int64(commands))
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
	if r.commands, err = t.meter.Int64Histogram("warden.redis.pipeline.commands",
		metric.WithDescription("Commands (Takes) per rate-limit store round trip to Redis."),
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
