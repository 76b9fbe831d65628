package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
)

// envoyFailConfig: one domain per failure policy on Redis ("closed" and "open": 1,000,000
// per day on "user"; "local": 40 per day, so 10 per replica of 4 when Redis is down), and a
// public route limited in "closed" for ext_authz.
func envoyFailConfig(redisAddr string) string {
	return `server:
  drain: 1ms
redis:
  addrs: [` + redisAddr + `]
rate_limit:
  replicas: 4
  domains:
    - domain: closed
      failure_policy: fail_closed
      descriptors: [{key: user, rate_limit: {unit: day, requests_per_unit: 1000000}}]
    - domain: open
      failure_policy: fail_open
      descriptors: [{key: user, rate_limit: {unit: day, requests_per_unit: 1000000}}]
    - domain: local
      failure_policy: local
      descriptors: [{key: user, rate_limit: {unit: day, requests_per_unit: 40}}]
authz:
  routes:
    - name: status
      method: GET
      path: /v1/status
      public: true
      rate_limits: [{domain: closed, descriptors: [{key: user, from: header.x-user}]}]
`
}

// Kinds of call in TestEnvoyFailuresAreDecisions, and what one call got.
const (
	rlsClosed = iota
	rlsOpen
	rlsLocal
	authzClosed
	nKinds
)

var failKindNames = [nKinds]string{"RLS fail_closed", "RLS fail_open", "RLS local", "ext_authz fail_closed route"}

type envoyTally struct {
	calls, ok, over, http503, marked, markedOK, late, rpcErr, other atomic.Int64
}

func (t *envoyTally) add(o *envoyTally) {
	for _, p := range [...][2]*atomic.Int64{{&t.calls, &o.calls}, {&t.ok, &o.ok}, {&t.over, &o.over},
		{&t.http503, &o.http503}, {&t.marked, &o.marked}, {&t.markedOK, &o.markedOK}, {&t.late, &o.late},
		{&t.rpcErr, &o.rpcErr}, {&t.other, &o.other}} {
		p[0].Add(p[1].Load())
	}
}

// TestEnvoyFailuresAreDecisions (issue 23): the real binary on a real Redis that is stalled
// (DEBUG SLEEP) and then shut down, under a bounded open loop of Envoy calls at a 20 ms
// deadline. Every Envoy call gets the policy's decision, never an RPC error: RLS fail_closed
// OVER_LIMIT (marked store-unavailable), fail_open OK (each counted in the fallback metric),
// local within the per-replica share; ext_authz on a route limited in fail_closed a 503
// denial. Unanswered calls within 20 ms stay within a tolerance for a loaded machine, as in
// TestFailClosedUnderLoadAndOutage. Counting is exact again within 1 s of Redis's return.
func TestEnvoyFailuresAreDecisions(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Redis through a stall and an outage")
	}
	bin := wardenBinary(t)
	srv := redistest.Start(t, "--enable-debug-command", "yes")
	p := startProcess(t, bin, writeConfig(t, envoyFailConfig(srv.Addr())))
	defer func() {
		if t.Failed() {
			t.Logf("warden:\n%s", p.logs)
		}
	}()
	cc := dial(t, p.addr)
	rlsc := rlsv3.NewRateLimitServiceClient(cc)
	authc := authv3.NewAuthorizationClient(cc)
	wc := wardenv1.NewWardenServiceClient(cc)

	const (
		healthy    = iota
		transition // DEBUG SLEEP sent: Redis may or may not have started sleeping
		stalled
		down
		back // the breaker may still be open for its cooldown: the policy answers
		// crossed: the calls during which the phase changed (e.g. sent while down, answered by
		// the restarted Redis) or sent while Redis restarts, which prove nothing of either phase.
		crossed
		nPhases
	)
	phases := [nPhases]string{"healthy", "stall starting", "stalled (DEBUG SLEEP)", "down", "back (first second)", "across a phase change, or while Redis restarts"}
	var tallies [nPhases][nKinds]envoyTally
	var phase atomic.Int32
	var lastOther atomic.Value

	rlsCall := func(domain, user string) (*rlsv3.RateLimitResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		return rlsc.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain,
			Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}})
	}
	authzReq := envoytest.Request{Method: "GET", Path: "/v1/status", Host: "api", Headers: [][2]string{{"x-user", "stall"}}}.CheckRequest()
	call := func(kind int, ph int32, tl *envoyTally) {
		tl.calls.Add(1)
		var err error
		if kind == authzClosed {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			var resp *authv3.CheckResponse
			resp, err = authc.Check(ctx, authzReq)
			cancel()
			if err == nil {
				switch {
				case resp.GetOkResponse() != nil:
					tl.ok.Add(1)
				case resp.GetDeniedResponse().GetStatus().GetCode() == 503:
					tl.http503.Add(1)
				default:
					tl.other.Add(1)
					lastOther.Store(fmt.Sprint(failKindNames[kind], ": ", resp))
				}
				return
			}
		} else {
			domain := [...]string{"closed", "open", "local"}[kind]
			user := "stall"
			if kind == rlsLocal && ph != healthy {
				user = "outage" // the fallback's share on a key the healthy phase did not use
			}
			var resp *rlsv3.RateLimitResponse
			resp, err = rlsCall(domain, user)
			if err == nil {
				marked := resp.GetDynamicMetadata().GetFields()[envoy.MetadataStoreUnavailable].GetBoolValue()
				if marked {
					tl.marked.Add(1)
				}
				switch resp.GetOverallCode() {
				case rlsv3.RateLimitResponse_OK:
					tl.ok.Add(1)
					if marked {
						tl.markedOK.Add(1)
					}
				case rlsv3.RateLimitResponse_OVER_LIMIT:
					tl.over.Add(1)
				default:
					tl.other.Add(1)
				}
				return
			}
		}
		if status.Code(err) == codes.DeadlineExceeded {
			tl.late.Add(1) // no answer within the client's deadline
			return
		}
		tl.rpcErr.Add(1)
		lastOther.Store(fmt.Sprint(failKindNames[kind], ": ", err))
	}

	openFallbacks := func() int64 { return fallbackCount(t, p.admin, "open") }
	// Read before any call: on a loaded machine even a healthy-phase call may fail open,
	// and every fail_open answer of every phase is compared with the metric's growth.
	fallbacksBefore := openFallbacks()

	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 2 * nKinds {
		wg.Go(func() {
			kind := g % nKinds
			for i := 0; i < 5_000 && !stop.Load(); i++ { // bounded
				ph := phase.Load()
				var one envoyTally
				call(kind, ph, &one)
				if phase.Load() != ph {
					ph = crossed
				}
				tallies[ph][kind].add(&one)
				time.Sleep(4 * time.Millisecond)
			}
		})
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer admin.Close()
	time.Sleep(500 * time.Millisecond)
	phase.Store(transition)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slept := make(chan error, 1)
	go func() { slept <- admin.Do(ctx, "DEBUG", "SLEEP", 1).Err() }()
	time.Sleep(10 * time.Millisecond) // Redis received it and sleeps
	phase.Store(stalled)
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP: %v", err)
	}
	// While Redis restarts, a call may be answered by the old state or by the new Redis before
	// Restart has seen it answer PING: those calls count as crossed, not as down.
	pinged := shutdownAndRestart(t, ctx, admin, srv, func() { phase.Store(down) }, func() { phase.Store(crossed) }, func() { phase.Store(back) })
	// The first decision by Redis again (not marked store-unavailable), on a key nothing
	// else touches.
	checkRecovered(t, pinged, func() bool {
		resp, err := rlsCall("closed", "probe")
		return err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_OK &&
			!resp.GetDynamicMetadata().GetFields()[envoy.MetadataStoreUnavailable].GetBoolValue()
	})
	// The load ends with the first second (see TestFailClosedUnderLoadAndOutage).
	stop.Store(true)
	wg.Wait()
	checkExactAgain(t, wc, pinged)
	fallbacksAfter := openFallbacks()

	localShareOK := int64(0)
	for ph := range tallies {
		for kind := range nKinds {
			tl := &tallies[ph][kind]
			t.Logf("%s, %s: %d calls: %d OK, %d OVER_LIMIT, %d 503, %d marked store-unavailable, %d unanswered within 20ms, %d RPC errors, %d other",
				phases[ph], failKindNames[kind], tl.calls.Load(), tl.ok.Load(), tl.over.Load(), tl.http503.Load(), tl.marked.Load(),
				tl.late.Load(), tl.rpcErr.Load(), tl.other.Load())
			if tl.rpcErr.Load() != 0 || tl.other.Load() != 0 {
				t.Errorf("%s, %s: %d RPC errors, %d other answers (last: %v), want 0", phases[ph], failKindNames[kind],
					tl.rpcErr.Load(), tl.other.Load(), lastOther.Load())
			}
			if kind == rlsLocal && ph != healthy {
				// The healthy phase counts on another key ("stall"): a loaded machine can
				// send a few of its calls to the fallback too, each within that key's share.
				localShareOK += tl.markedOK.Load()
			}
			if ph != stalled && ph != down {
				continue
			}
			answered := tl.calls.Load() - tl.late.Load()
			switch kind {
			case rlsClosed:
				if tl.over.Load() != answered || tl.marked.Load() != answered {
					t.Errorf("%s, %s: %d OVER_LIMIT, %d marked, of %d answered; want all", phases[ph], failKindNames[kind], tl.over.Load(), tl.marked.Load(), answered)
				}
			case rlsOpen:
				if tl.markedOK.Load() != answered {
					t.Errorf("%s, %s: %d OK marked store-unavailable of %d answered; want all", phases[ph], failKindNames[kind], tl.markedOK.Load(), answered)
				}
			case rlsLocal:
				if tl.marked.Load() != answered {
					t.Errorf("%s, %s: %d marked of %d answered; want all (decided by the fallback)", phases[ph], failKindNames[kind], tl.marked.Load(), answered)
				}
			case authzClosed:
				if tl.http503.Load() != answered {
					t.Errorf("%s, %s: %d 503 denials of %d answered; want all", phases[ph], failKindNames[kind], tl.http503.Load(), answered)
				}
			}
			if answered == 0 {
				t.Errorf("%s, %s: no call answered: the fault was not seen", phases[ph], failKindNames[kind])
			}
			h := &tallies[healthy][kind]
			checkLate(t, phases[ph]+", "+failKindNames[kind], tl.late.Load(), tl.calls.Load(), h.late.Load(), h.calls.Load())
		}
	}
	// local: the fallback allows this replica's share, ceil(40/4) = 10, of the outage's key.
	t.Logf("local: %d allowed by the fallback (share 10)", localShareOK)
	if localShareOK > 10 || localShareOK == 0 {
		t.Errorf("local: %d allowed by the fallback during the outage, want between 1 and the share, 10", localShareOK)
	}
	var openMarked int64
	for ph := range tallies {
		openMarked += tallies[ph][rlsOpen].markedOK.Load()
	}
	t.Logf("fail_open: %d answers marked store-unavailable, fallback metric +%d", openMarked, fallbacksAfter-fallbacksBefore)
	if got := fallbacksAfter - fallbacksBefore; got < openMarked {
		t.Errorf("fail_open: the fallback metric counted %d, want at least the %d fail_open answers", got, openMarked)
	}
}

var fallbackLine = regexp.MustCompile(`(?m)^warden_ratelimit_store_unavailable_total\{([^}]*)\} (\d+)`)

// fallbackCount is the sum of warden.ratelimit.store_unavailable for domain on /metrics.
func fallbackCount(t *testing.T, admin, domain string) int64 {
	t.Helper()
	_, metrics := httpGet(t, "http://"+admin+"/metrics")
	var n int64
	for _, m := range fallbackLine.FindAllStringSubmatch(metrics, -1) {
		if regexp.MustCompile(`(^|,)domain="` + domain + `"`).MatchString(m[1]) {
			v, _ := strconv.ParseInt(m[2], 10, 64)
			n += v
		}
	}
	return n
}
