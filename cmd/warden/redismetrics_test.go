package main

import (
	"context"
	"strconv"
	"testing"
	"time"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/redistest"
)

// TestRedisRoundTripMetrics: rate-limit decisions on a real Redis move the round-trip
// histograms (latency, Takes and script calls per pipeline); nothing is left in flight once they are answered.
func TestRedisRoundTripMetrics(t *testing.T) {
	srv := redistest.Start(t)
	r := start(t, nil, "-config", writeConfig(t, limitConfig("  addrs: ["+srv.Addr()+"]\n", 1000)))
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
	const calls = 20
	for range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.CheckRateLimit(ctx, rlRequest("closed", "metrics", 1))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, body := httpGet(t, "http://"+r.Admin+"/metrics")
	count := func(name string) int {
		n, _ := strconv.Atoi(metricLine(body, name))
		return n
	}
	if n := count("warden_redis_round_trip_duration_seconds_count"); n < calls {
		t.Errorf("warden_redis_round_trip_duration_seconds_count = %d, want at least %d", n, calls)
	}
	if v := metricLine(body, "warden_redis_round_trip_duration_seconds_sum"); v == "" || v == "0" {
		t.Errorf("warden_redis_round_trip_duration_seconds_sum = %q, want > 0", v)
	}
	if n := count("warden_redis_pipeline_commands_sum"); n < calls {
		t.Errorf("warden_redis_pipeline_commands_sum = %d, want at least %d", n, calls)
	}
	if n := count("warden_redis_pipeline_scripts_sum"); n < 1 || n > calls {
		t.Errorf("warden_redis_pipeline_scripts_sum = %d, want 1..%d", n, calls)
	}
	if v := metricLine(body, "warden_redis_round_trips_in_flight"); v != "0" {
		t.Errorf("warden_redis_round_trips_in_flight = %q, want 0", v)
	}
}

// TestRedisObserverAllocatesNothing: recording a round trip (from the store's batchers)
// allocates nothing.
func TestRedisObserverAllocatesNothing(t *testing.T) {
	tel, err := newTelemetry(config.Telemetry{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.close()
	obs, err := tel.redisObserver()
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() { obs.RoundTrip(12, 2, 300*time.Microsecond) }); n != 0 {
		t.Errorf("allocs per round trip recorded: got %v, want 0", n)
	}
}
