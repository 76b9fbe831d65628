package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestParseDecisions(t *testing.T) {
	text := `# HELP warden_ratelimit_decisions_total Rate limit decisions.
# TYPE warden_ratelimit_decisions_total counter
warden_ratelimit_decisions_total{decision="allowed",domain="api",otel_scope_name="warden",source="store"} 120
warden_ratelimit_decisions_total{decision="over_limit",domain="api",otel_scope_name="warden",source="store"} 3
warden_ratelimit_decisions_total{decision="allowed",domain="bench",otel_scope_name="warden",source="fail_open"} 7
warden_ratelimit_decisions_total{decision="allowed",domain="bench",otel_scope_name="warden",source="cache"} 1e+06
warden_ratelimit_decisions_total{decision="allowed",domain="benchlease",otel_scope_name="warden",source="lease"} 900
warden_ratelimit_decisions_total{decision="allowed",domain="benchlease",otel_scope_name="warden",source="store"} 20
warden_ratelimit_decisions_total{decision="over_limit",domain="benchlease",otel_scope_name="warden",source="store"} 4
warden_ratelimit_store_unavailable_total{domain="bench",policy="fail_open"} 7
`
	got, leaseAllowed, err := parseDecisions(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if leaseAllowed != 920 {
		t.Errorf("allowed decisions of %s: got %v, want 920", leaseDomain, leaseAllowed)
	}
	want := map[string]float64{"store": 147, "fail_open": 7, "cache": 1e6, "lease": 900}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("source %s: got %v, want %v", k, got[k], v)
		}
	}
	if _, _, err := parseDecisions(strings.NewReader(`warden_ratelimit_decisions_total{decision="allowed"} 1` + "\n")); err == nil {
		t.Error("a line without a source label: got no error")
	}
}

// TestParseSent: the Takes and script calls the Redis store sent are the sums of its two
// histograms; a Warden without the scripts histogram has none.
func TestParseSent(t *testing.T) {
	text := `warden_redis_pipeline_commands_bucket{otel_scope_name="warden",le="1"} 3
warden_redis_pipeline_commands_sum{otel_scope_name="warden"} 1500
warden_redis_pipeline_commands_count{otel_scope_name="warden"} 40
warden_redis_pipeline_scripts_sum{otel_scope_name="warden"} 60
warden_ratelimit_decisions_total{decision="allowed",domain="api",source="store"} 1500
`
	m, err := parseMetrics(strings.NewReader(text))
	if err != nil || m.takes != 1500 || m.scripts != 60 || !m.hasSent || m.roundTrips != 40 || m.hasHolds {
		t.Errorf("got %+v, %v; want 1500 Takes, 60 scripts, exported, 40 round trips, no holds", m, err)
	}
	m, err = parseMetrics(strings.NewReader(text + "warden_redis_batch_holds_total{otel_scope_name=\"warden\"} 7\n"))
	if err != nil || m.holds != 7 || !m.hasHolds {
		t.Errorf("with holds: got %+v, %v; want 7 holds, exported", m, err)
	}
	m, err = parseMetrics(strings.NewReader("warden_redis_pipeline_commands_sum 3\n"))
	if err != nil || m.hasSent {
		t.Errorf("without the scripts histogram: exported %v, %v; want false", m.hasSent, err)
	}
}

func TestParseScriptCalls(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_ping:calls=3,usec=1,usec_per_call=0.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=1000,usec=90000,usec_per_call=90.00,rejected_calls=0,failed_calls=2\r\n" +
		"cmdstat_eval:calls=4,usec=900,usec_per_call=225.00,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseScriptCalls(info)
	if err != nil || got != 1004 {
		t.Fatalf("got %d, %v; want 1004", got, err)
	}
}

func TestCheck(t *testing.T) {
	at := func(store, failOpen, fallback float64, scripts uint64) counters {
		return counters{decisions: map[string]float64{"store": store, "fail_open": failOpen, "fallback": fallback, "cache": 5}, scripts: scripts}
	}
	before := at(100, 2, 0, 100)
	// sent: after, with the Takes and script calls Warden's store sent during the load.
	sent := func(c counters, takes, scripts float64) counters {
		c.hasSent, c.sentTakes, c.sentScripts = true, takes, scripts
		return c
	}
	before.hasSent = true
	for _, tc := range []struct {
		name      string
		after     counters
		perScript int
		invalid   string // a substring of the reason; "" for valid
	}{
		{"every decision on Redis", at(1100, 2, 0, 1100), 1, ""},
		{"batched as claimed", at(1100, 2, 0, 200), 10, ""},
		{"fail_open during the load", at(1100, 3, 0, 1100), 1, "1 of 1001 decisions fail_open"},
		{"local fallback during the load", at(1100, 2, 4, 1100), 1, "4 fallback"},
		{"no store decision", at(100, 2, 0, 100), 1, "no decision taken by the store"},
		{"fewer script calls than decisions", at(1100, 2, 0, 600), 1, "500 script calls for 1000 store decisions"},
		{"fewer script calls than the batching claims", at(1100, 2, 0, 199), 10, "fewer than one per 10"},
		{"several Takes per script call, all run", sent(at(1100, 2, 0, 150), 1000, 50), 64, ""},
		{"fewer Takes sent than store decisions", sent(at(1100, 2, 0, 150), 990, 50), 64, "sent 990 Takes for 1000 store decisions"},
		{"fewer script calls run than sent", sent(at(1100, 2, 0, 140), 1000, 50), 64, "Redis ran 40 script calls, fewer than the 50"},
	} {
		v := check(before, tc.after, tc.perScript)
		if tc.invalid == "" && v.invalid != "" || !strings.Contains(v.invalid, tc.invalid) {
			t.Errorf("%s: got invalid %q, want %q", tc.name, v.invalid, tc.invalid)
		}
	}
}

// TestRedisRowValidity starts a real Warden on a real redis-server, as the runner does for a
// Redis row, and runs checkLoad around a load of CheckRateLimit calls: valid while Redis
// answers; INVALID, with the fail_open decisions as the reason, when Redis stops answering
// scripts in the middle of the load (CLIENT PAUSE WRITE: EVALSHA waits, INFO still answers).
func TestRedisRowValidity(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/warden and starts Warden and redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	root, err := repoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var bins binaries
	if bins.warden, bins.floor, err = buildWarden(t.Context(), root, "", dir); err != nil {
		t.Fatal(err)
	}
	start := func(t *testing.T, config string) (*setup, *grpc.ClientConn) {
		st := &setup{config: config, redis: true, files: benchFiles()}
		if err := st.start(bins, dir, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.stop() })
		cc, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return st, cc
	}
	calls := func(cc *grpc.ClientConn, from, n int) error {
		for i := from; i < from+n; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := checkRateLimitDecide(ctx, cc, checkRateLimitRequest(i%requests))
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	}

	t.Run("valid", func(t *testing.T) {
		// A store deadline no loaded test machine reaches: every decision is Redis's.
		st, cc := start(t, strings.Replace(redisConfig(), "rate_limit:\n", "rate_limit:\n  store_timeout: 2s\n", 1))
		if err := calls(cc, 0, 5); err != nil { // the script is loaded
			t.Fatal(err)
		}
		v, err := checkLoad(t.Context(), st, 1, func() error { return calls(cc, 5, 100) })
		if err != nil {
			t.Fatal(err)
		}
		if v.invalid != "" || v.store != 100 || v.scripts < 100 {
			t.Fatalf("got %+v, want valid with 100 store decisions and at least 100 script calls", v)
		}
	})

	t.Run("ext_authz leased", func(t *testing.T) {
		// The ext_authz row on the route whose limit is leased: 10 users, 20 calls each,
		// so that most decisions come from a slice of 50.
		st, cc := start(t, strings.Replace(redisConfig(), "rate_limit:\n", "rate_limit:\n  store_timeout: 2s\n", 1))
		ext := func(from, n int) error {
			for i := from; i < from+n; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := extAuthzDecide(ctx, cc, extAuthzLeasedRequest(i%10))
				cancel()
				if err != nil {
					return err
				}
			}
			return nil
		}
		if err := ext(0, 5); err != nil {
			t.Fatal(err)
		}
		v, err := checkLeasedLoad(t.Context(), st, cc, 64, func() error { return ext(5, 200) })
		if err != nil {
			t.Fatal(err)
		}
		if v.invalid != "" || v.lease < 150 || v.admitted != 205 || v.debited < v.admitted {
			t.Fatalf("got %+v, want valid, most of 200 decisions from a lease, 205 admitted and as many units debited", v)
		}
	})

	t.Run("fail_open", func(t *testing.T) {
		st, cc := start(t, redisConfig()) // the default store_timeout and failure policy
		if err := calls(cc, 0, 5); err != nil {
			t.Fatal(err)
		}
		v, err := checkLoad(t.Context(), st, 1, func() error {
			if err := calls(cc, 5, 20); err != nil {
				return err
			}
			if _, err := redisCommand(st.redisAddr, "CLIENT PAUSE 2000 WRITE"); err != nil {
				return err
			}
			defer redisCommand(st.redisAddr, "CLIENT UNPAUSE")
			return calls(cc, 25, 20) // allowed by fail_open: the figures would measure that
		})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(v.invalid, "fail_open") {
			t.Fatalf("got %+v, want INVALID for fail_open decisions", v)
		}
		row := &row{label: "CheckRateLimit, Redis", results: map[string][]result{"closed loop": {{ok: 45, redis: v}}}}
		if got := tableRow(row, load{name: "closed loop"}); !strings.Contains(got, "| INVALID: ") {
			t.Errorf("table row: got %q, want INVALID and no figures", got)
		}
	})
}
