package main

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func shouldRateLimit(t *testing.T, c rlsv3.RateLimitServiceClient, domain, key, value string) rlsv3.RateLimitResponse_Code {
	t.Helper()
	resp, err := c.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: domain,
		Descriptors: []*commonrl.RateLimitDescriptor{{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp.GetOverallCode()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestEnvoySection(t *testing.T) {
	dir := t.TempDir()
	rl := filepath.Join(dir, "ratelimit")
	if err := os.Mkdir(rl, 0o755); err != nil {
		t.Fatal(err)
	}
	writeRL := func(n int) {
		t.Helper()
		s := "domain: edge\ndescriptors:\n  - key: ip\n    rate_limit:\n      unit: hour\n      requests_per_unit: " + string(rune('0'+n)) + "\n"
		tmp := filepath.Join(dir, "edge.tmp")
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(rl, "edge.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	writeRL(1)
	envoyAddr := freeAddr(t)
	p := filepath.Join(dir, "warden.yaml")
	cfg := `rate_limit:
  domains:
    - domain: own
      descriptors:
        - key: k
          rate_limit: {unit: hour, requests_per_unit: 1}
envoy:
  ratelimit_config: ratelimit
  rls: {response_headers: true}
  ext_authz: {failure_mode: open}
  listen_addr: ` + envoyAddr + "\n"
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	for _, addr := range []string{r.GRPC, envoyAddr} {
		c := rlsv3.NewRateLimitServiceClient(dial(t, addr))
		if got := shouldRateLimit(t, c, "nope", "k", addr); got != rlsv3.RateLimitResponse_OK {
			t.Errorf("%s: unknown domain: got %v, want OK", addr, got)
		}
	}
	c := rlsv3.NewRateLimitServiceClient(dial(t, envoyAddr))
	if a, b := shouldRateLimit(t, c, "own", "k", "x"), shouldRateLimit(t, c, "own", "k", "x"); a != rlsv3.RateLimitResponse_OK || b != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("rate_limit section's domain, 1 per hour: got %v then %v", a, b)
	}
	if a, b := shouldRateLimit(t, c, "edge", "ip", "1"), shouldRateLimit(t, c, "edge", "ip", "1"); a != rlsv3.RateLimitResponse_OK || b != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("ratelimit file's domain, 1 per hour: got %v then %v", a, b)
	}

	// Editing the ratelimit directory reloads the config.
	writeRL(5)
	waitFor(t, "the ratelimit config reload", func() bool {
		return shouldRateLimit(t, c, "edge", "ip", "2") == rlsv3.RateLimitResponse_OK &&
			shouldRateLimit(t, c, "edge", "ip", "2") == rlsv3.RateLimitResponse_OK
	})
}

func TestEnvoySectionErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: fortnight\n      requests_per_unit: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ cfg, want string }{
		{"envoy:\n  ratelimit_config: " + bad + "\n", bad + ":5: descriptors[0].rate_limit.unit: invalid rate limit unit"},
		{"envoy:\n  ext_authz:\n    failure_mode: maybe\n", ":3: envoy.ext_authz.failure_mode: must be closed or open"},
		{"envoy:\n  bogus: 1\n", `:2: envoy: unknown field "bogus"`},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "w.yaml")
		if err := os.WriteFile(p, []byte(tt.cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		err := run(context.Background(), []string{"-config", p, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off"}, nil, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: got %v, want an error containing %q", tt.cfg, err, tt.want)
		}
	}
}

func TestEnvoyDisabled(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(p, []byte("envoy:\n  rls: {enabled: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := start(t, nil, "-config", p)
	_, err := rlsv3.NewRateLimitServiceClient(dial(t, r.GRPC)).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "d"})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("rls disabled: got %v, want UNIMPLEMENTED", err)
	}
}
