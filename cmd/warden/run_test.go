package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testutil"
)

// syncBuffer collects the server's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type running struct {
	addrs
	logs     *syncBuffer
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// start runs the server in this process on free loopback ports. It stops in t.Cleanup, or
// earlier with stop.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	return startWith(t, nil, env, args...)
}

// startWith is start, with spans receiving the sampled spans.
func startWith(t *testing.T, spans sdktrace.SpanExporter, env map[string]string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{logs: &syncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan addrs, 1)
	args = append([]string{"-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0"}, args...)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() { r.done <- runWith(ctx, args, lookup, r.logs, func(a addrs) { ready <- a }, spans) }()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		t.Fatalf("run: %v\nlogs:\n%s", err, r.logs)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready after 10s")
	}
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("the server's last log lines but the audit's:\n%s", lastLines(r.logs.String(), 40))
		}
	})
	return r
}

// lastLines is the last n lines of s that are not audit records (one per denial: a test under
// load writes thousands).
func lastLines(s string, n int) string {
	var kept []string
	for l := range strings.Lines(s) {
		if !strings.Contains(l, `"log":"audit"`) {
			kept = append(kept, l)
		}
	}
	return strings.Join(kept[max(0, len(kept)-n):], "")
}

// stop stops the server and waits for it; calling it again does nothing.
func (r *running) stop(t *testing.T) {
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
	})
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNoConfigServesHealthAndReflection(t *testing.T) {
	r := start(t, nil)
	cc := dial(t, r.GRPC)
	ctx := context.Background()
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: got %v, %v; want SERVING", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	in, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range in.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	for _, want := range []string{"warden.v1.WardenService", "warden.v1.AdminService", "grpc.health.v1.Health"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("reflection lists %v; want %s among them", names, want)
		}
	}
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		if code, body := httpGet(t, "http://"+r.Admin+path); code != want {
			t.Errorf("GET %s: got %d %q, want %d", path, code, body, want)
		}
	}
	if !strings.Contains(r.logs.String(), "grpcurl -plaintext "+r.GRPC) {
		t.Errorf("start-up log does not say how to get started:\n%s", r.logs)
	}
}

func TestStartupConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml, want string
	}{
		{"malformed", "server:\n\tgrpc_addr: x\n", "bad.yaml:2: found character that cannot start any token"},
		{"unknown key", "log:\n  level: info\n  colour: red\n", `bad.yaml:3: unknown field "colour"`},
		{"missing secret", "redis:\n  addrs: [127.0.0.1:1]\n  password: ${NOPE}\n", "bad.yaml:3: redis.password: environment variable NOPE is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "bad.yaml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			err := run(context.Background(), []string{"-config", p}, func(string) (string, bool) { return "", false }, io.Discard, nil)
			if err == nil {
				t.Fatal("run: got nil error")
			}
			if got, want := err.Error(), p[:len(p)-len("bad.yaml")]+tt.want; got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

var versionRe = regexp.MustCompile(`warden_config_info\{[^}]*version="([0-9a-f]*)"`)

func configVersion(t *testing.T, admin string) string {
	t.Helper()
	_, body := httpGet(t, "http://"+admin+"/metrics")
	m := versionRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no warden_config_info in /metrics:\n%s", body)
	}
	return m[1]
}

func TestHotReloadKeepsOldConfigWhenInvalid(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "warden.yaml")
	write := func(s string) { replaceFile(t, p, s) }
	write("log:\n  level: info\n")
	r := start(t, nil, "-config", p)
	v1 := configVersion(t, r.Admin)
	if v1 == "" {
		t.Fatal("empty config version")
	}

	write("log:\n  level: info\n  bogus: 1\n")
	testutil.WaitFor(t, 10*time.Second, "the reload error to be logged", func() bool {
		return strings.Contains(r.logs.String(), `config reload failed; keeping the running config`) &&
			strings.Contains(r.logs.String(), `warden.yaml:3: unknown field \"bogus\"`)
	})
	if got := configVersion(t, r.Admin); got != v1 {
		t.Fatalf("version after an invalid reload: got %s, want the old %s", got, v1)
	}

	write("log:\n  level: debug\n")
	testutil.WaitFor(t, 10*time.Second, "the new config", func() bool { return configVersion(t, r.Admin) != v1 })
}

func TestReadinessFollowsRedis(t *testing.T) {
	s := redistest.Start(t)
	dir := t.TempDir()
	p := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("redis:\n  addrs: [%s]\n", s.Addr())), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	if code, _ := httpGet(t, "http://"+r.Admin+"/readyz"); code != 200 {
		t.Fatalf("readyz with Redis up: got %d, want 200", code)
	}
	_, metrics := httpGet(t, "http://"+r.Admin+"/metrics")
	if v := metricLine(metrics, "warden_redis_pool_connections", `state="total"`); v == "" || v == "0" {
		t.Errorf("warden_redis_pool_connections{state=total}: got %q, want the open connections", v)
	}
	if v := metricLine(metrics, "warden_redis_pool_gets_total", `result="miss"`); v == "" || v == "0" {
		t.Errorf("warden_redis_pool_gets_total{result=miss}: got %q, want the connections dialled", v)
	}
	s.Stop()
	testutil.WaitFor(t, 10*time.Second, "readyz 503 with Redis down", func() bool { code, _ := httpGet(t, "http://"+r.Admin+"/readyz"); return code == 503 })
	s.Restart()
	testutil.WaitFor(t, 10*time.Second, "readyz 200 with Redis back", func() bool { code, _ := httpGet(t, "http://"+r.Admin+"/readyz"); return code == 200 })
}

func TestStartupFailsClearlyWithoutRedis(t *testing.T) {
	s := redistest.Start(t)
	addr := s.Addr()
	s.Stop()
	dir := t.TempDir()
	p := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(p, []byte(fmt.Sprintf("redis:\n  addrs: [%s]\n", addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", p, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off"}, nil, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "redis "+addr) || !strings.Contains(err.Error(), "is Redis running") {
		t.Fatalf("got %v, want an error naming %s with a hint", err, addr)
	}
}

// TestSIGTERMUnderLoad runs the real binary, loads it, sends SIGTERM, and checks that no
// call failed before the server reported NOT_SERVING (the drain) and that it exits 0.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := wardenBinary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte("server:\n  drain: 500ms\n  shutdown_timeout: 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-config", cfgPath, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	var addr string
	testutil.WaitFor(t, 10*time.Second, "the listening log line", func() bool {
		m := regexp.MustCompile(`"grpc":"(127\.0\.0\.1:\d+)"`).FindStringSubmatch(logs.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	cc := dial(t, addr)
	hc := healthpb.NewHealthClient(cc)

	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	var firstErr error
	stop := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1_000_000; n++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				cancel()
				mu.Lock()
				switch {
				case err != nil:
					failed++
					if firstErr == nil {
						firstErr = err
					}
				case resp.Status == healthpb.HealthCheckResponse_NOT_SERVING:
					mu.Unlock()
					return // a well-behaved client stops sending here
				default:
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitCh := make(chan error, 1)
	go func() { waitCh <- cmd.Wait() }()
	select {
	case err := <-waitCh:
		if err != nil {
			t.Fatalf("warden exited with %v\n%s", err, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("warden did not exit within 15s of SIGTERM")
	}
	close(stop)
	wg.Wait()
	if failed > 0 || ok == 0 {
		t.Fatalf("calls: %d ok, %d failed (first: %v); want >0 ok and 0 failed", ok, failed, firstErr)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in logs:\n%s", logs)
	}
}

func TestWebhookConfigErrorsNameTheLine(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "w.yaml")
	src := "webhooks:\n  sources:\n    - name: gh\n      scheme: github\n      secrets: [\"${GH_SECRET}\"]\n    - name: stripe\n      scheme: stripe\n      secrets:\n        - ${SHORT}\n"
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"GH_SECRET": "a-github-secret-that-is-long-enough", "SHORT": "too-short"}
	err := run(context.Background(), []string{"-config", p}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard, nil)
	want := p + `:9: webhooks.sources[1].secrets[0]: source "stripe": secret is 9 bytes, need at least 24`
	if err == nil || err.Error() != want {
		t.Fatalf("got  %v\nwant %s", err, want)
	}
	if strings.Contains(err.Error(), "too-short") {
		t.Fatal("the error leaks the secret")
	}
}

const rateLimitConfig = `rate_limit:
  domains:
    - domain: api
      descriptors:
        - key: key
          rate_limit:
            name: per_key
            algorithm: sliding_window
            period: 30s
            requests_per_unit: 2
        - key: tenant
          rate_limit:
            unit: minute
            requests_per_unit: 100
            tiers:
              free: {unit: minute, requests_per_unit: 1}
`

func TestRateLimitFromConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(p, []byte(rateLimitConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
	ask := func(tier string, kv ...string) bool {
		t.Helper()
		resp, err := c.CheckRateLimit(context.Background(), &wardenv1.CheckRateLimitRequest{Domain: "api", Tier: tier,
			Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: kv[0], Value: kv[1]}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Allowed
	}
	if got := []bool{ask("", "key", "a"), ask("", "key", "a"), ask("", "key", "a")}; got[0] != true || got[1] != true || got[2] != false {
		t.Errorf("2 per 30s: got %v, want [true true false]", got)
	}
	if got := []bool{ask("free", "tenant", "t"), ask("free", "tenant", "t"), ask("paid", "tenant", "u")}; got[0] != true || got[1] != false || got[2] != true {
		t.Errorf("tiers: got %v, want [true false true]", got)
	}
}

func TestRateLimitConfigErrorNamesTheLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yaml")
	bad := strings.Replace(rateLimitConfig, "unit: minute\n            requests_per_unit: 100", "unit: fortnight\n            requests_per_unit: 100", 1)
	if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	err := run(context.Background(), []string{"-config", p}, nil, io.Discard, nil)
	if err == nil || !strings.HasPrefix(err.Error(), p+":13: rate_limit.domains[0].descriptors[1].rate_limit.unit: ") {
		t.Fatalf("got %v, want an error at line 13 naming the unit", err)
	}
}

// TestShippedExampleConfig starts Warden from examples/warden.yaml, as the README says.
func TestShippedExampleConfig(t *testing.T) {
	env := map[string]string{
		"WARDEN_PEPPER":         "an-example-pepper-that-is-long-enough-0123456789",
		"GITHUB_WEBHOOK_SECRET": "an-example-github-secret-long-enough",
	}
	r := start(t, env, "-config", "../../examples/warden.yaml")
	c := wardenv1.NewWardenServiceClient(dial(t, r.GRPC))
	resp, err := c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/healthz"}})
	if err != nil || !resp.Allowed {
		t.Fatalf("public route: got %v, %v", resp, err)
	}
	resp, err = c.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/users/alice/orders"}})
	if err != nil || resp.Allowed || resp.HttpStatus != 401 {
		t.Fatalf("no credentials: got %v, %v; want 401", resp, err)
	}
}

func TestPprofIsOptIn(t *testing.T) {
	r := start(t, nil)
	if code, _ := httpGet(t, "http://"+r.Admin+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof without server.pprof: got %d, want 404", code)
	}
	p := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(p, []byte("server:\n  pprof: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = start(t, nil, "-config", p)
	if code, _ := httpGet(t, "http://"+r.Admin+"/debug/pprof/"); code != 200 {
		t.Errorf("pprof with server.pprof: got %d, want 200", code)
	}
}
