package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testutil"
)

// process is a warden binary running in a test.
type process struct {
	cmd   *exec.Cmd
	logs  *syncBuffer
	addr  string // gRPC
	admin string // admin HTTP (/metrics)
}

// startProcess runs the warden binary on cfgPath with free loopback ports, waits until it
// listens, and kills it in t.Cleanup.
func startProcess(t *testing.T, bin, cfgPath string) *process {
	t.Helper()
	p := &process{logs: &syncBuffer{}}
	p.cmd = exec.Command(bin, "-config", cfgPath, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	p.cmd.Stderr = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() })
	re := regexp.MustCompile(`"grpc":"(127\.0\.0\.1:\d+)","admin_http":"(127\.0\.0\.1:\d+)"`)
	testutil.WaitFor(t, 10*time.Second, "the listening log line", func() bool {
		m := re.FindStringSubmatch(p.logs.String())
		if m != nil {
			p.addr, p.admin = m[1], m[2]
		}
		return m != nil
	})
	return p
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// limitConfig is a config on Redis (redis is the redis section's body) with the default
// rate-limit settings and one domain per failure policy: "open", "closed", "local", each
// limiting "user" to perDay per day with the default algorithm (a token bucket).
func limitConfig(redis string, perDay int) string {
	var b strings.Builder
	b.WriteString("server:\n  drain: 1ms\nredis:\n" + redis + "rate_limit:\n  domains:\n")
	for _, d := range []string{"open", "closed", "local"} {
		policy := map[string]string{"open": "fail_open", "closed": "fail_closed", "local": "local"}[d]
		fmt.Fprintf(&b, "    - domain: %s\n      failure_policy: %s\n      descriptors:\n        - key: user\n          rate_limit: {unit: day, requests_per_unit: %d}\n", d, policy, perDay)
	}
	return b.String()
}

func rlRequest(domain, user string, cost int64) *wardenv1.CheckRateLimitRequest {
	r := &wardenv1.CheckRateLimitRequest{Domain: domain,
		Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}}
	if cost != 1 {
		r.Cost = proto.Int64(cost)
	}
	return r
}

// TestFourReplicasExact is the burst of the issue: four Warden processes with the default
// rate-limit configuration on one Redis, 200 concurrent callers, 3 × L requests on one fresh
// key: exactly L admitted, and floor(L/7) requests of cost 7. The same on a 3-master Cluster.
func TestFourReplicasExact(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := wardenBinary(t)
	t.Run("single", func(t *testing.T) {
		srv := redistest.Start(t)
		fourReplicas(t, bin, "  addrs: ["+srv.Addr()+"]\n")
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.StartCluster(t)
		fourReplicas(t, bin, "  mode: cluster\n  addrs: ["+strings.Join(cl.Addrs(), ", ")+"]\n")
	})
}

func fourReplicas(t *testing.T, bin, redisSection string) {
	const (
		limit   = 1000
		callers = 200
	)
	cfg := writeConfig(t, limitConfig(redisSection, limit))
	var clients []wardenv1.WardenServiceClient
	var procs []*process
	for range 4 {
		p := startProcess(t, bin, cfg)
		procs = append(procs, p)
		clients = append(clients, wardenv1.NewWardenServiceClient(dial(t, p.addr)))
	}
	defer func() {
		if t.Failed() {
			for i, p := range procs {
				t.Logf("warden %d:\n%s", i, p.logs)
			}
		}
	}()
	burst := func(user string, cost int64) (admitted, failed int64, firstErr error) {
		var next, ok, bad atomic.Int64
		var once sync.Once
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= 3*limit {
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					resp, err := clients[i%4].CheckRateLimit(ctx, rlRequest("open", user, cost))
					cancel()
					switch {
					case err != nil:
						bad.Add(1)
						once.Do(func() { firstErr = err })
					case resp.Allowed:
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
		return ok.Load(), bad.Load(), firstErr
	}
	for _, c := range []struct {
		user string
		cost int64
	}{{"burst-1", 1}, {"burst-7", 7}} {
		admitted, failed, err := burst(c.user, c.cost)
		want := int64(limit) / c.cost
		t.Logf("cost %d: %d of %d requests admitted (limit %d), %d errors", c.cost, admitted, 3*limit, limit, failed)
		if failed != 0 {
			t.Errorf("cost %d: %d calls failed (first: %v), want 0", c.cost, failed, err)
		}
		if admitted != want {
			t.Errorf("cost %d: %d admitted, want exactly %d", c.cost, admitted, want)
		}
	}
}

// TestFirstRequestCounted: a fresh Redis and a fresh Warden, and the very first request on a
// limited key is counted by Redis (remaining = limit - 1), 20 starts in a row: the script is
// loaded before Warden serves.
func TestFirstRequestCounted(t *testing.T) {
	if testing.Short() {
		t.Skip("20 starts")
	}
	for i := range 20 {
		func() {
			srv := redistest.Start(t)
			defer srv.Stop()
			r := start(t, nil, "-config", writeConfig(t, limitConfig("  addrs: ["+srv.Addr()+"]\n", 10)), "-admin-addr", "off")
			defer r.stop(t)
			c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.CheckRateLimit(ctx, rlRequest("open", "first", 1))
			if err != nil {
				t.Fatalf("start %d: %v", i, err)
			}
			if len(resp.Statuses) != 1 || resp.Statuses[0].Remaining != 9 {
				t.Fatalf("start %d: first request: got %v, want counted (remaining 9 of 10)", i, resp)
			}
		}()
	}
}

// TestFailClosedUnderLoadAndOutage: fail_closed answers no UNAVAILABLE on a healthy Redis under
// a 50-caller closed loop; then, with Redis stalled (DEBUG SLEEP 3), shut down and restarted,
// every call gets the policy's answer within a 20ms client deadline, and counting is exact
// again within 1s of Redis answering PING.
func TestFailClosedUnderLoadAndOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Redis through a stall and an outage")
	}
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	r := start(t, nil, "-config", writeConfig(t, limitConfig("  addrs: ["+srv.Addr()+"]\n", 1_000_000)), "-admin-addr", "off")
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))

	// 1. A healthy Redis under a 50-caller closed loop: no UNAVAILABLE.
	var calls, unavailable, other atomic.Int64
	var firstErr atomic.Value
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 50 {
		wg.Go(func() {
			for i := 0; i < 100_000 && !stop.Load(); i++ { // bounded
				_, err := c.CheckRateLimit(context.Background(), rlRequest("closed", fmt.Sprint("u", g%5), 1))
				calls.Add(1)
				switch status.Code(err) {
				case codes.OK:
				case codes.Unavailable:
					unavailable.Add(1)
				default:
					other.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("healthy Redis, 50 callers: %d calls, %d UNAVAILABLE, %d other errors", calls.Load(), unavailable.Load(), other.Load())
	if unavailable.Load() != 0 || other.Load() != 0 {
		t.Fatalf("fail_closed on a healthy Redis: %d UNAVAILABLE, %d other errors (first: %v), want 0", unavailable.Load(), other.Load(), firstErr.Load())
	}

	// 2. Healthy, stalled, down, back: an open loop of calls with Envoy's 20ms deadline.
	const (
		healthy = iota
		stalled
		down
		back // the breaker may still be open for its cooldown: the policy answers
	)
	phases := [...]string{"healthy", "stalled (DEBUG SLEEP 3)", "down", "back (first second)"}
	type tally struct{ calls, ok, unavailable, late, wrong atomic.Int64 }
	var tallies [4][2]tally // [phase][fail_closed, fail_open]
	var phase atomic.Int32
	var lastWrong atomic.Value
	stop.Store(false)
	for g := range 8 {
		wg.Go(func() {
			domain, p := "closed", 0
			if g%2 == 1 {
				domain, p = "open", 1
			}
			for i := 0; i < 10_000 && !stop.Load(); i++ { // bounded
				tl := &tallies[phase.Load()][p]
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				resp, err := c.CheckRateLimit(ctx, rlRequest(domain, "stall", 1))
				cancel()
				tl.calls.Add(1)
				switch {
				case err == nil && resp.Allowed:
					tl.ok.Add(1)
				case status.Code(err) == codes.Unavailable && domain == "closed":
					tl.unavailable.Add(1)
				case status.Code(err) == codes.DeadlineExceeded:
					tl.late.Add(1) // no answer within the client's deadline (or Warden saw it pass)
				default:
					tl.wrong.Add(1)
					lastWrong.Store(fmt.Sprint(domain, ": ", resp, err))
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer admin.Close()
	time.Sleep(time.Second)
	phase.Store(stalled)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := admin.Do(ctx, "DEBUG", "SLEEP", 3).Err(); err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	pinged := shutdownAndRestart(t, ctx, admin, srv, func() { phase.Store(down) }, nil, func() { phase.Store(back) })
	// The first decision by Redis again, on a key nothing else touches.
	checkRecovered(t, pinged, func() bool {
		_, err := c.CheckRateLimit(context.Background(), rlRequest("closed", "probe", 1))
		return err == nil
	})
	// The load ends with the first second: a starved test machine may time out enough of its
	// 20ms calls to open the breaker again, which is its job, and would fail the check below.
	stop.Store(true)
	wg.Wait()
	// 3. Exact again.
	checkExactAgain(t, c, pinged)
	for ph := range tallies {
		for p, name := range []string{"fail_closed", "fail_open"} {
			tl := &tallies[ph][p]
			t.Logf("%s, %s: %d calls: %d allowed, %d UNAVAILABLE, %d unanswered within 20ms, %d other",
				phases[ph], name, tl.calls.Load(), tl.ok.Load(), tl.unavailable.Load(), tl.late.Load(), tl.wrong.Load())
			if tl.wrong.Load() != 0 {
				t.Errorf("%s, %s: %d answers not the policy's (last: %v), want 0", phases[ph], name, tl.wrong.Load(), lastWrong.Load())
			}
			if ph == healthy {
				continue
			}
			h := &tallies[healthy][p]
			checkLate(t, phases[ph]+", "+name, tl.late.Load(), tl.calls.Load(), h.late.Load(), h.calls.Load())
		}
	}
	if tallies[stalled][1].ok.Load() == 0 || tallies[down][0].unavailable.Load() == 0 {
		t.Errorf("the faults were not seen: want fail_open allowing and fail_closed UNAVAILABLE")
	}
}

// shutdownAndRestart shuts Redis down (SHUTDOWN NOSAVE through admin), calls down, keeps it
// down for 500ms, calls restarting (if not nil), restarts it, calls back, and returns when Redis answered PING again.
func shutdownAndRestart(t *testing.T, ctx context.Context, admin *redis.Client, srv *redistest.Server, down, restarting, back func()) (pinged time.Time) {
	t.Helper()
	if err := admin.Do(ctx, "SHUTDOWN", "NOSAVE").Err(); err != nil && !isConnClosed(err) {
		t.Fatalf("SHUTDOWN NOSAVE: %v", err)
	}
	down()
	srv.Stop() // reap the process
	time.Sleep(500 * time.Millisecond)
	if restarting != nil {
		restarting()
	}
	srv.Restart() // returns once Redis answers PING
	pinged = time.Now()
	back()
	return pinged
}

// checkRecovered polls counted (a decision by Redis) every 10ms, at most 3s, and fails t
// unless it was true within 1s of pinged; it returns at pinged + 1s.
func checkRecovered(t *testing.T, pinged time.Time, counted func() bool) {
	t.Helper()
	var recovered time.Duration
	for range 300 { // bounded: 3s
		if counted() {
			recovered = time.Since(pinged)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("counting in Redis again %v after Redis answered PING", recovered)
	if recovered == 0 || recovered > time.Second {
		t.Errorf("counting in Redis again %v after PING (0: not within 3s), want at most 1s", recovered)
	}
	time.Sleep(time.Until(pinged.Add(time.Second)))
}

// checkExactAgain: on a fresh key of the "closed" domain (1,000,000 per day), 30 requests of
// cost 50,000 admit exactly 20, every answer from Redis.
func checkExactAgain(t *testing.T, c wardenv1.WardenServiceClient, pinged time.Time) {
	t.Helper()
	admitted := 0
	for i := range 30 {
		resp, err := c.CheckRateLimit(context.Background(), rlRequest("closed", "after", 50_000))
		if err != nil {
			t.Fatalf("%v after Redis answered PING, request %d: %v", time.Since(pinged), i, err)
		}
		if resp.Allowed {
			admitted++
		}
	}
	if admitted != 20 {
		t.Errorf("%v after Redis answered PING: %d of 30 admitted on a fresh key, want exactly 20", time.Since(pinged), admitted)
	}
}

// checkLate fails t when a phase with Redis at fault left more of its calls unanswered
// within 20ms than the healthy phase did plus 2% (10% under the race detector). A loaded test
// machine misses a 20ms deadline now and then whatever Redis does: the healthy phase measures
// how often. Warden keeps a fifth of the caller's time to answer by the policy.
func checkLate(t *testing.T, what string, late, calls, healthyLate, healthyCalls int64) {
	t.Helper()
	base := float64(healthyLate) / float64(max(healthyCalls, 1))
	extra := 0.02
	if raceEnabled {
		extra = 0.10
	}
	if float64(late) > (base+extra)*float64(calls) {
		t.Errorf("%s: %d of %d calls unanswered within 20ms, want at most %.0f%% (%.1f%% when healthy + %.0f%%)",
			what, late, calls, 100*(base+extra), 100*base, 100*extra)
	}
}

func isConnClosed(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "connection reset")
}
