package clients_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/clients"
)

// wardenBin is the Warden binary built once by TestMain (empty if the build failed; tests
// that need it then fail with buildErr).
var wardenBin, buildErr = "", error(nil)

func TestMain(m *testing.M) {
	var err error
	if keys, err = newTestKeys(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	testConfig = keys.config() + testRoutes
	dir, err := os.MkdirTemp("", "warden-clients-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	bin := filepath.Join(dir, "warden")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/wardenhq/warden/cmd/warden")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/warden: %w", err)
	} else {
		wardenBin = bin
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testPepper keys the digests of the test's static API keys. Warden reads it from the
// environment (${CLIENTS_TEST_PEPPER}): a pepper is never written in a config file.
const testPepper = "clients-test-pepper-of-at-least-32-bytes-0123456789"

// testKeys are the static API keys of testConfig, made afresh by TestMain.
type testKeys struct {
	// alice: tenant acme, role reader, tier free. bench: the same for owner bench.
	// admin: owner ops, role warden-admin (AdminService).
	alice, bench, admin string
	entries             []string
}

var keys testKeys

func newTestKeys() (testKeys, error) {
	pepper, err := authn.NewPepper([]byte(testPepper))
	if err != nil {
		return testKeys{}, err
	}
	var k testKeys
	for _, x := range []struct {
		dst                 *string
		owner, roles, extra string
	}{
		{&k.alice, "alice", "reader", ", tier: free"},
		{&k.bench, "bench", "reader", ""},
		{&k.admin, "ops", "warden-admin", ""},
	} {
		key, parsed, err := authn.NewAPIKey(authn.EnvLive)
		if err != nil {
			return testKeys{}, err
		}
		d := pepper.Digest(parsed.Secret)
		*x.dst = key
		k.entries = append(k.entries, fmt.Sprintf("      - {id: %s, env: live, digest: %s, owner: %s, tenant: acme, roles: [%s]%s}\n",
			parsed.ID, hex.EncodeToString(d[:]), x.owner, x.roles, x.extra))
	}
	return k, nil
}

// config is the authn section with the static keys.
func (k testKeys) config() string {
	return `
authn:
  api_keys:
    environment: live
    pepper: ${CLIENTS_TEST_PEPPER}
    keys:
` + strings.Join(k.entries, "")
}

// testConfig is the Warden configuration the end-to-end tests run against (set by TestMain):
// the authn section with keys' static API keys, then testRoutes.
var testConfig string

// testRoutes are public routes to exercise the route table and rate limits, authenticated
// gRPC routes (GetOrder and the Follow stream need orders:read, Cancel needs orders:write), an
// owner route over HTTP (/v1/users/{user_id}/orders: orders:read to GET, orders:write to
// POST, and the user must be the caller), and roles and ownership for Authorize (orders are
// owned, the catalog is not).
const testRoutes = `
log: {level: info, format: json}
server: {drain: 1ms, shutdown_timeout: 1s}
authz:
  roles:
    reader: {permissions: ["orders:read", "catalog:read"]}
    writer: {permissions: ["orders:read", "orders:write"]}
  ownership:
    orders: {resource_field: resource.owner, principal_field: principal.subject}
  routes:
    - {name: ping, method: POST, path: /test.v1.Shop/Ping, public: true}
    - {name: watch, method: POST, path: /test.v1.Shop/Watch, public: true}
    - {name: http_ping, method: GET, path: /v1/ping, public: true}
    - {name: get_order, method: POST, path: /test.v1.Shop/GetOrder, action: "orders:read", skip_ownership: true}
    - {name: cancel_order, method: POST, path: /test.v1.Shop/Cancel, action: "orders:write", skip_ownership: true}
    - {name: follow, method: POST, path: /test.v1.Shop/Follow, action: "orders:read", skip_ownership: true}
    - {name: user_orders, method: GET, path: "/v1/users/{user_id}/orders", action: "orders:read", owner_param: user_id}
    - {name: new_user_order, method: POST, path: "/v1/users/{user_id}/orders", action: "orders:write", owner_param: user_id}
    - name: limited
      method: POST
      path: /test.v1.Shop/Limited
      public: true
      rate_limits: [{domain: api, descriptors: [{key: route, from: route.name}]}]
    - name: http_limited
      method: GET
      path: /v1/limited
      public: true
      rate_limits: [{domain: api, descriptors: [{key: route, from: route.name}]}]
rate_limit:
  domains:
    - domain: api
      failure_policy: fail_closed
      descriptors:
        - key: route
          value: limited
          rate_limit: {name: limited_route, unit: minute, requests_per_unit: 2}
        - key: route
          value: http_limited
          rate_limit: {name: http_limited_route, unit: minute, requests_per_unit: 1}
        - key: client
          rate_limit: {name: per_client, unit: minute, requests_per_unit: 1}
        - key: bench
          rate_limit: {name: bench, unit: second, requests_per_unit: 1000000000}
`

// startWarden runs the Warden binary with config on a free loopback port and returns its
// gRPC address. The process is killed when the test ends.
func startWarden(t testing.TB, config string) string {
	t.Helper()
	addr, _ := startWardenAt(t, config, "127.0.0.1:0")
	return addr
}

// startWardenAt runs the Warden binary with config listening on grpcAddr, and returns its
// gRPC address once it listens, and a function that kills it (SIGKILL) and waits for it to
// exit. The process is killed when the test ends, if still running.
func startWardenAt(t testing.TB, config, grpcAddr string) (string, func()) {
	t.Helper()
	if wardenBin == "" {
		t.Fatal(buildErr)
	}
	cfg := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wardenBin, "-grpc-addr", grpcAddr, "-admin-addr", "off", "-config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "CLIENTS_TEST_PEPPER=" + testPepper}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	addr := make(chan string, 1)
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent {
				log.WriteString(line + "\n")
			}
			var rec struct{ Msg, GRPC string }
			if !sent && json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "warden listening" {
				addr <- rec.GRPC
				sent = true
			}
		}
		if !sent {
			close(addr)
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatalf("warden exited before listening:\n%s", log.String())
		}
		return a, kill
	case <-time.After(30 * time.Second):
		t.Fatal("warden did not report listening within 30s")
	}
	return "", kill
}

// dial returns a connection to addr, closed when the test ends.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// shopDesc is a tiny hand-written gRPC service, test.v1.Shop, whose unary methods answer the
// caller's principal subject (or "") and whose stream method sends it once.
var shopDesc = grpc.ServiceDesc{
	ServiceName: "test.v1.Shop",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Ping", Handler: shopUnary},
		{MethodName: "Limited", Handler: shopUnary},
		{MethodName: "GetOrder", Handler: shopUnary},
		{MethodName: "Echo", Handler: shopUnary},
		{MethodName: "Cancel", Handler: shopUnary},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "Watch", Handler: shopStream, ServerStreams: true},
		{StreamName: "Follow", Handler: shopStream, ServerStreams: true},
	},
}

func whoAmI(ctx context.Context) *wrapperspb.StringValue {
	p, _ := clients.PrincipalFrom(ctx)
	return wrapperspb.String(p.GetSubject())
}

func shopUnary(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
	in := new(emptypb.Empty)
	if err := dec(in); err != nil {
		return nil, err
	}
	h := func(ctx context.Context, _ any) (any, error) {
		if m, _ := grpc.Method(ctx); strings.HasSuffix(m, "/Echo") {
			return echoMetadata(ctx), nil
		}
		return whoAmI(ctx), nil
	}
	if icpt == nil {
		return h(ctx, in)
	}
	m, _ := grpc.Method(ctx)
	return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: m}, h)
}

// echoMetadata answers the incoming x-* metadata as "k=v;…", sorted.
func echoMetadata(ctx context.Context) *wrapperspb.StringValue {
	md, _ := metadata.FromIncomingContext(ctx)
	var kv []string
	for k, v := range md {
		if strings.HasPrefix(k, "x-") {
			kv = append(kv, k+"="+strings.Join(v, ","))
		}
	}
	slices.Sort(kv)
	return wrapperspb.String(strings.Join(kv, ";"))
}

func shopStream(_ any, ss grpc.ServerStream) error {
	if err := ss.RecvMsg(new(emptypb.Empty)); err != nil {
		return err
	}
	return ss.SendMsg(whoAmI(ss.Context()))
}

// startShop serves test.v1.Shop on loopback behind the interceptors and returns a connection
// to it.
func startShop(t testing.TB, wc *clients.Client, opts ...clients.HandlerOption) *grpc.ClientConn {
	t.Helper()
	return dial(t, serveShop(t, nil, wc, opts...))
}

// serveShop serves test.v1.Shop on loopback behind the interceptors, with srvOpts, and
// returns its address.
func serveShop(t testing.TB, srvOpts []grpc.ServerOption, wc *clients.Client, opts ...clients.HandlerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(srvOpts,
		grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc, opts...)),
		grpc.ChainStreamInterceptor(clients.StreamServerInterceptor(wc, opts...)),
	)...)
	srv.RegisterService(&shopDesc, struct{}{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// callShop calls a unary Shop method and returns the subject it saw.
func callShop(ctx context.Context, conn *grpc.ClientConn, method string, opts ...grpc.CallOption) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/test.v1.Shop/"+method, &emptypb.Empty{}, out, opts...)
	return out.GetValue(), err
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}
