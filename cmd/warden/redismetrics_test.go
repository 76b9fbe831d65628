package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth/redisrevoke"
	"github.com/wardenhq/warden/authn/redisauth"
	"github.com/wardenhq/warden/authn/webhook/redisreplay"
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
	if v := metricLine(body, "warden_redis_batch_holds_total"); v == "" {
		t.Error("warden_redis_batch_holds_total not exported")
	}
	// One call at a time: each finds nothing in flight and is sent by its own goroutine.
	if n := count("warden_redis_batch_direct_total"); n < calls {
		t.Errorf("warden_redis_batch_direct_total = %d, want at least %d", n, calls)
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

// TestRedisStoreCommandMetrics: the commands of the API-key, webhook replay and JWT
// revocation stores on a real Redis are timed by dependency; the rate-limit store's
// (EVALSHA, pipelined or not, on its own keys) are not.
func TestRedisStoreCommandMetrics(t *testing.T) {
	srv := redistest.Start(t)
	tel, err := newTelemetry(config.Telemetry{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tel.close)
	const prefix = "w:"
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	hook, err := tel.redisCommandHook(prefix)
	if err != nil {
		t.Fatal(err)
	}
	client.AddHook(hook)
	ctx := context.Background()

	replay := redisreplay.New(client, redisreplay.Config{Prefix: prefix + webhookKeys})
	for range 2 {
		if _, err := replay.Seen(ctx, "github", "delivery-1", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	revocations := redisrevoke.New(client, redisrevoke.Config{Prefix: prefix + jtiKeys})
	if err := revocations.Revoke(ctx, "jti-1", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := revocations.Revoked(ctx, "jti-1"); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := redisauth.NewKeyStore(redisauth.Config{Client: client, Prefix: prefix + apiKeyKeys, Channel: prefix + apiKeyKeys + "invalidate"})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := keys.Key(ctx, "no-such-key"); !errors.Is(err, authn.ErrKeyNotFound) {
			t.Fatalf("Key: %v, want ErrKeyNotFound", err)
		}
	}
	// A script of the key store (EVALSHA, then EVAL after NOSCRIPT the first time): its key
	// comes after the digest.
	for range 2 {
		if err := keys.Touch(ctx, "no-such-key", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The rate-limit store's commands: a script on its keys, alone and in a pipeline.
	script := redis.NewScript(`return redis.call("INCR", KEYS[1])`)
	if err := script.Run(ctx, client, []string{prefix + rateLimitKeys + "{a}b"}).Err(); err != nil {
		t.Fatal(err)
	}
	pipe := client.Pipeline()
	script.EvalSha(ctx, pipe, []string{prefix + rateLimitKeys + "{a}b"})
	script.EvalSha(ctx, pipe, []string{prefix + rateLimitKeys + "{a}c"})
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	metrics := httptest.NewServer(promhttp.HandlerFor(tel.reg, promhttp.HandlerOpts{}))
	t.Cleanup(metrics.Close)
	_, body := httpGet(t, metrics.URL)
	for dep, want := range map[string]string{"webhook_replay": "2", "jwt_revocations": "3", "apikey_store": "7"} {
		l := `dependency="` + dep + `"`
		if got := metricLine(body, "warden_redis_command_duration_seconds_count", l); got != want {
			t.Errorf("warden_redis_command_duration_seconds_count{%s}: got %q, want %s", l, got, want)
		}
		if got := metricLine(body, "warden_redis_command_duration_seconds_sum", l); got == "" || got == "0" {
			t.Errorf("warden_redis_command_duration_seconds_sum{%s}: got %q, want > 0", l, got)
		}
	}
	var series int
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "warden_redis_command_duration_seconds_count{") {
			series++
		}
	}
	if series != 3 {
		t.Errorf("%d dependencies timed, want 3 (the rate-limit store's commands are not):\n%s", series, body)
	}
}

// BenchmarkRedisCommandHookPassThrough: what the hook costs a rate-limit store command (an
// EVALSHA on its keys, which it does not time): the hook's wrapper and one key comparison
// per other store, no clock read.
func BenchmarkRedisCommandHookPassThrough(b *testing.B) {
	tel, err := newTelemetry(config.Telemetry{}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tel.close()
	h, err := tel.redisCommandHook("warden:")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	next := func(context.Context, redis.Cmder) error { return nil }
	hooked := h.ProcessHook(next)
	cmd := redis.NewCmd(ctx, "evalsha", "0123456789abcdef0123456789abcdef01234567", 1, "warden:rl:{api\x00route\x00x}", 1, 2, 3)
	b.ReportAllocs()
	for b.Loop() {
		_ = hooked(ctx, cmd)
	}
}
