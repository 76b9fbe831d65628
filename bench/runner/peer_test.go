package main

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
)

func TestParseCommandCalls(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_incrby:calls=2000,usec=1800,usec_per_call=0.90,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_expire:calls=2000,usec=1500,usec_per_call=0.75,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseCommandCalls(info)
	if err != nil {
		t.Fatal(err)
	}
	if got["incrby"] != 2000 || got["expire"] != 2000 || got["info"] != 3 || len(got) != 3 {
		t.Errorf("got %v, want incrby 2000, expire 2000, info 3", got)
	}
	if _, err := parseCommandCalls("cmdstat_get:calls=x,usec=1\r\n"); err == nil {
		t.Error("calls=x: got no error")
	}
}

func TestCheckCounted(t *testing.T) {
	before := map[string]uint64{"incrby": 10, "expire": 10, "evalsha": 5}
	for _, tc := range []struct {
		name    string
		after   map[string]uint64
		counted []string
		calls   uint64
		invalid string // a substring of the reason; "" for valid
	}{
		{"an INCRBY per decision", map[string]uint64{"incrby": 1010, "expire": 1010}, peerIncrements, 1000, ""},
		{"INCRBYFLOAT counts too", map[string]uint64{"incrby": 510, "incrbyfloat": 500}, peerIncrements, 1000, ""},
		{"fewer increments than decisions", map[string]uint64{"incrby": 1009, "expire": 2000}, peerIncrements, 1000,
			"Redis ran 999 INCRBY+INCRBYFLOAT for 1000 decisions"},
		{"EXPIRE alone counts nothing", map[string]uint64{"incrby": 10, "expire": 1010}, peerIncrements, 1000, "Redis ran 0 INCRBY"},
		{"no call answered", map[string]uint64{"incrby": 10}, peerIncrements, 0, "no call answered OK"},
		{"an EVALSHA per decision", map[string]uint64{"evalsha": 105}, []string{"evalsha", "eval"}, 100, ""},
		{"a script short", map[string]uint64{"evalsha": 104}, []string{"evalsha", "eval"}, 100, "99 EVALSHA+EVAL for 100"},
	} {
		v := checkCounted(before, tc.after, tc.counted, tc.calls)
		if tc.invalid == "" && v.invalid != "" || !strings.Contains(v.invalid, tc.invalid) {
			t.Errorf("%s: got invalid %q, want %q", tc.name, v.invalid, tc.invalid)
		}
	}
	// An invalid round hides every figure of the row.
	v := checkCounted(before, map[string]uint64{"incrby": 500}, peerIncrements, 1000)
	r := &row{label: "envoyproxy/ratelimit, Redis", results: map[string][]result{"closed loop": {{ok: 1000, rps: 7000, redis: v}}}}
	if got := tableRow(r, load{name: "closed loop"}); !strings.Contains(got, "| INVALID: ") || strings.Contains(got, "7000") {
		t.Errorf("table row: got %q, want INVALID and no figures", got)
	}
	if got := validitySummary([]validity{checkCounted(before, map[string]uint64{"incrby": 1010}, peerIncrements, 1000), v}); !strings.HasPrefix(got, "INVALID") {
		t.Errorf("summary: got %q, want INVALID", got)
	}
}

func TestP99Ratio(t *testing.T) {
	ms := time.Millisecond
	res := []result{{p99: 3 * ms}, {p99: 2 * ms}, {p99: 8 * ms}}
	ref := []result{{p99: 2 * ms}, {p99: 2 * ms}, {p99: 4 * ms}}
	if got := p99Ratio(res, ref); got != "1.50" {
		t.Errorf("got %s, want the median of 1.5, 1, 2: 1.50", got)
	}
	ref[1].redis.invalid = "x"
	if got := p99Ratio(res, ref); got != "INVALID" {
		t.Errorf("with an invalid reference round: got %s, want INVALID", got)
	}
}

func TestPlanPeerAndReferences(t *testing.T) {
	names := func(rows []*row) []string {
		var s []string
		for _, r := range rows {
			s = append(s, r.label)
		}
		return s
	}
	rows, _, err := plan(regexp.MustCompile("^RLS, Redis$"), false)
	if err != nil {
		t.Fatal(err)
	}
	got := names(rows)
	if !slices.Contains(got, rowEvalsha) || !slices.Contains(got, "floor: RLS batched pipeline, Redis") {
		t.Errorf("got %q, want the Redis floors beside RLS, Redis", got)
	}
	if slices.Contains(got, "envoyproxy/ratelimit, Redis") {
		t.Errorf("got %q: the peer without -peer-ratelimit", got)
	}
	rows, _, err = plan(regexp.MustCompile(`^ext_authz, API key \+ route \+ Redis limit$|^RLS, Redis$`), false)
	if err != nil {
		t.Fatal(err)
	}
	var extFloor, rlsBatch *row
	for _, r := range rows {
		switch r.label {
		case rowExtAuthzBatch:
			extFloor = r
		case "floor: RLS batched pipeline, Redis":
			rlsBatch = r
		}
	}
	if extFloor == nil || rlsBatch == nil {
		t.Fatalf("got %q, want the ext_authz Redis floor beside the ext_authz Redis row", names(rows))
	}
	if extFloor.floor.label != "floor: ext_authz allow" || extFloor.st != rlsBatch.st || extFloor.st.server != serverFloorBatch || !extFloor.st.redis {
		t.Errorf("ext_authz Redis floor: compared with %q on %+v; want the empty ext_authz floor, on the RLS batched floor's process", extFloor.floor.label, extFloor.st)
	}
	rows, setups, err := plan(regexp.MustCompile("RLS"), true)
	if err != nil {
		t.Fatal(err)
	}
	var peer *row
	for _, r := range rows {
		if r.label == "envoyproxy/ratelimit, Redis" {
			peer = r
		}
	}
	if peer == nil || peer.floor.label != "floor: RLS OK" || peer.st.server != serverPeer || !peer.st.redis {
		t.Fatalf("got rows %q; want the peer on its own Redis setup, compared with the empty RLS floor", names(rows))
	}
	if n := len(setups); n != 6 { // floor, Warden memory, Warden Redis, 2 Redis floors, peer
		t.Errorf("setups: got %d, want 6", n)
	}
	rows, _, err = plan(regexp.MustCompile("^floor: health"), true)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names(rows), "envoyproxy/ratelimit, Redis") {
		t.Error("the peer ran without its Warden row")
	}
}

func TestPeerEnvIsLoopbackWithoutStatsd(t *testing.T) {
	env := peerEnv("/r", "127.0.0.1:7000", 1, 2, 3)
	for _, want := range []string{"USE_STATSD=false", "REDIS_SOCKET_TYPE=tcp", "REDIS_URL=127.0.0.1:7000", "GRPC_HOST=127.0.0.1",
		"GRPC_PORT=1", "HOST=127.0.0.1", "PORT=2", "DEBUG_HOST=127.0.0.1", "DEBUG_PORT=3", "RUNTIME_ROOT=/r", "RUNTIME_WATCH_ROOT=false"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
}

// TestRedisReferences starts the Redis floors of bench/floor (and envoyproxy/ratelimit when
// WARDEN_BENCH_PEER names its binary) on real redis-servers, as the runner does, and checks
// a load of RLS calls with checkCountedLoad: valid with the commands that count them, and
// INVALID when the commands counted are not the ones the server sends.
func TestRedisReferences(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bench/floor and starts redis-server")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	root, err := repoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bins := binaries{peer: os.Getenv("WARDEN_BENCH_PEER")}
	if bins.warden, bins.floor, err = buildWarden(t.Context(), root, "", dir); err != nil {
		t.Fatal(err)
	}
	servers := []struct {
		server  string
		counted []string
	}{{serverFloorEvalsha, []string{"evalsha", "eval"}}, {serverFloorBatch, []string{"evalsha", "eval"}}, {serverPeer, peerIncrements}}
	for _, sv := range servers {
		t.Run(sv.server, func(t *testing.T) {
			if sv.server == serverPeer && bins.peer == "" {
				t.Skip("WARDEN_BENCH_PEER is not set (envoyproxy/ratelimit's binary)")
			}
			st := &setup{label: sv.server, redis: true, server: sv.server}
			if err := st.start(bins, dir, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.stop() })
			cc, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			const n = 50
			var ok uint64
			calls := func() error {
				for i := range n {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := rlsDecide(ctx, cc, rlsRequest(i))
					cancel()
					if err != nil {
						return err
					}
					ok++
				}
				return nil
			}
			v, err := checkCountedLoad(st, sv.counted, calls, func() uint64 { return ok })
			if err != nil {
				t.Fatal(err)
			}
			if v.invalid != "" || v.calls != n || v.counted < n {
				t.Fatalf("got %+v, want valid with %d decisions and at least as many counted commands", v, n)
			}
			ok = 0
			v, err = checkCountedLoad(st, []string{"hincrby"}, calls, func() uint64 { return ok })
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(v.invalid, "Redis ran 0 HINCRBY for 50 decisions") {
				t.Fatalf("counting a command it does not send: got %+v, want INVALID", v)
			}
		})
	}
}

// TestProtosetOfRLS: ghz gets the peer's descriptors from this binary (the peer serves no
// reflection): the set holds the RLS service and every file it imports, dependencies first.
func TestProtosetOfRLS(t *testing.T) {
	b, err := protoset("envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit")
	if err != nil {
		t.Fatal(err)
	}
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	files, err := protodesc.NewFiles(&set) // fails if an import is missing
	if err != nil {
		t.Fatal(err)
	}
	if _, err := files.FindDescriptorByName("envoy.service.ratelimit.v3.RateLimitService"); err != nil {
		t.Error(err)
	}
	if _, err := protoset("no.such.Service/M"); err == nil {
		t.Error("an unknown service: got no error")
	}
}

// TestRedisRowSplitsCPU: a Redis row's CPU cell states server + Redis, as issue 19 does.
func TestRedisRowSplitsCPU(t *testing.T) {
	res := result{ok: 1000, usage: usage{cpuSeconds: 0.1, redisSeconds: 0.03}}
	r := &row{label: "envoyproxy/ratelimit, Redis", sc: Scenario{Redis: true}, results: map[string][]result{"closed loop": {res}}}
	r.floor = r
	if got := tableRow(r, load{name: "closed loop"}); !strings.Contains(got, "| 100.0 (70.0 + 30.0) |") {
		t.Errorf("got %q, want 100.0 (70.0 + 30.0)", got)
	}
}
