package main

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testcred"
)

// extAuthzUsers is how many keys, users and limit keys extAuthzPathApp serves.
const extAuthzUsers = 64

// extAuthzPathApp is Warden as the bench's "ext_authz, API key + route + limit" rows run it
// (bench/runner: wardenConfig, extAuthzRequestFor): static API keys, a route with an owner
// check limited per user, on Redis when redisAddr is set, else in memory. It returns the app
// and each user's ext_authz request as Envoy's filter sends it, marshalled.
func extAuthzPathApp(tb testing.TB, redisAddr string) (*app, [][]byte) {
	tb.Helper()
	var entries string
	keys := make([]string, extAuthzUsers)
	for i := range keys {
		k, err := testcred.NewKey(exampleEnv["WARDEN_PEPPER"], authn.EnvLive)
		if err != nil {
			tb.Fatal(err)
		}
		keys[i] = k.Key
		entries += "      - " + k.Entry("live", fmt.Sprint("user-", i), "acme", "user") + "\n"
	}
	cfg := ""
	if redisAddr != "" {
		cfg = "redis:\n  addrs: [" + redisAddr + "]\n"
	}
	a := handlersApp(tb, cfg+`authn:
  api_keys:
    environment: live
    pepper: "${WARDEN_PEPPER}"
    keys:
`+entries+`authz:
`+userOrdersAuthz+``+userOrdersPerUserLimit+`          rate_limit: {name: per_user, unit: second, requests_per_unit: 1000000000}
envoy:
  ext_authz: {enabled: true}
`)
	reqs := make([][]byte, extAuthzUsers)
	for i := range reqs {
		path := fmt.Sprint("/v1/users/user-", i, "/orders")
		r := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Address: benchSockAddr("10.0.0.7", 50000+uint32(i))},
			Destination: &authv3.AttributeContext_Peer{Address: benchSockAddr("10.0.0.2", 8080)},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: fmt.Sprint("req-", i), Method: "GET", Path: path + "?page=1", Host: "api.bench",
				Scheme: "http", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "api.bench", ":method": "GET", ":path": path + "?page=1",
					"authorization": "Bearer " + keys[i], "user-agent": "bench",
					"x-request-id": fmt.Sprint("req-", i), "x-forwarded-proto": "http",
				},
			}},
		}}
		b, err := proto.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		reqs[i] = b
	}
	return a, reqs
}

func benchSockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// extAuthzWireCall is one ext_authz decision as the gRPC server makes it, transport aside:
// the server codec decodes Envoy's request, the adapter decides, the codec marshals the
// answer (and its buffers are freed, as the transport does once written).
func extAuthzWireCall(ctx context.Context, a *app, raw []byte) error {
	req := new(authv3.CheckRequest)
	if err := (envoy.Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(raw)}, req); err != nil {
		return err
	}
	resp, err := a.envoy.auth.Check(ctx, req)
	if err != nil {
		return err
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
		return fmt.Errorf("got %v, want allowed", resp)
	}
	out, err := (envoy.Codec{}).Marshal(resp)
	if err != nil {
		return err
	}
	out.Free()
	return nil
}

// BenchmarkExtAuthzPath is the bench's counted ext_authz decision (API key, route with an
// owner check, per-user limit) without the gRPC transport: decode, decide, marshal, on the
// in-memory store (memory) and on a real Redis (redis: RunParallel with 32 goroutines per
// CPU, so that Takes are batched as under load). cpu-ns/op is Warden's CPU per decision
// (getrusage; Redis is another process). Compare with benchstat, interleaved runs.
func BenchmarkExtAuthzPath(b *testing.B) {
	srv := redistest.Start(b)
	for _, v := range []struct{ name, redis string }{{"memory", ""}, {"redis", srv.Addr()}} {
		a, reqs := extAuthzPathApp(b, v.redis)
		ctx := context.Background()
		for _, r := range reqs { // every key cached, every limit key created
			if err := extAuthzWireCall(ctx, a, r); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			if v.redis != "" {
				b.SetParallelism(32)
			}
			var before, after syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if err := extAuthzWireCall(ctx, a, reqs[i%len(reqs)]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestExtAuthzWireAllocs: the bench's ext_authz decision on the in-memory store, decoded,
// decided and marshalled as the server does (extAuthzWireCall), allocates at most 21 times:
// the request's block, headers map and strings, the limit's key, the buffer slice of the
// answer's bytes; Warden's request and answer, and the buffer of the answer's bytes, are
// reused from call to call (23 allocations and 2.2 KB before that buffer was; 26 and 5.8 KB
// before: a larger headers map, the adapter's call block, the generic encoder's).
func TestExtAuthzWireAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector (sync.Pool drops items at random)")
	}
	a, reqs := extAuthzPathApp(t, "")
	ctx, i := context.Background(), 0
	call := func() {
		if err := extAuthzWireCall(ctx, a, reqs[i%len(reqs)]); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range reqs {
		call()
	}
	allocs := testing.AllocsPerRun(200, call)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 200 {
		call()
	}
	runtime.ReadMemStats(&after)
	bytes := (after.TotalAlloc - before.TotalAlloc) / 200
	t.Logf("%v allocations, %d bytes per decision", allocs, bytes)
	if allocs > 21 || bytes > 2100 {
		t.Errorf("got %v allocations and %d bytes per decision, want at most 21 and 2100", allocs, bytes)
	}
}
