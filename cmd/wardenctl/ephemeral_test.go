package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/internal/redistest"
)

const ephemeralPepper = "wardenctl-test-pepper-of-at-least-32-bytes-0123456789"

// buildWarden builds cmd/warden and returns the binary's path.
func buildWarden(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warden")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/wardenhq/warden/cmd/warden").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/warden: %v\n%s", err, out)
	}
	return bin
}

// startWardenBinary runs the Warden binary bin with config on a free loopback port and
// returns the gRPC address once Warden logs that it listens. The process is killed when the
// test ends.
func startWardenBinary(t *testing.T, bin, config string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off", "-config", cfg)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WARDENCTL_TEST_PEPPER=" + ephemeralPepper}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, GRPC string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "warden listening" {
				addr <- rec.GRPC
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return a
	case <-time.After(60 * time.Second):
		t.Fatal("warden did not report listening within 60s")
	}
	return ""
}

// TestKeysEphemeralWarning runs the Warden binary on the memory store and on Redis: keys
// create and keys import warn on stderr only when Warden answers ephemeral (memory), and -o
// json keeps stdout one JSON object carrying the field.
func TestKeysEphemeralWarning(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Warden binary")
	}
	bin := buildWarden(t)
	pepper, err := authn.NewPepper([]byte(ephemeralPepper))
	if err != nil {
		t.Fatal(err)
	}
	adminKey, parsed, err := authn.NewAPIKey(authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	d := pepper.Digest(parsed.Secret)
	base := fmt.Sprintf(`log: {level: info, format: json}
server: {drain: 1ms, shutdown_timeout: 1s}
authn:
  api_keys:
    environment: live
    pepper: ${WARDENCTL_TEST_PEPPER}
    imported_formats: [{prefix: acme_live_, environment: live}]
    keys:
      - {id: %s, env: live, digest: %s, owner: ops, roles: [warden-admin]}
`, parsed.ID, hex.EncodeToString(d[:]))
	importFile := filepath.Join(t.TempDir(), "keys.csv")
	if err := os.WriteFile(importFile, []byte("key,owner\nacme_live_"+strings.Repeat("k", 32)+",alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		config    func(t *testing.T) string
		ephemeral bool
	}{
		{"memory store", func(*testing.T) string { return base }, true},
		{"redis", func(t *testing.T) string { return base + "redis: {addrs: [" + redistest.Start(t).Addr() + "]}\n" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startWardenBinary(t, bin, tc.config(t))
			ctx := context.Background()
			call := func(args ...string) (stdout, stderr string) {
				t.Helper()
				var out, errOut bytes.Buffer
				if err := run(ctx, append([]string{"-addr", addr, "-api-key", adminKey}, args...), nil, &out, &errOut, nil); err != nil {
					t.Fatalf("%v: %v\n%s", args, err, errOut.String())
				}
				return out.String(), errOut.String()
			}

			_, stderr := call("keys", "create", "-owner", "alice")
			if got := strings.Contains(stderr, ephemeralWarning); got != tc.ephemeral {
				t.Errorf("keys create: warned %v, want %v; stderr:\n%s", got, tc.ephemeral, stderr)
			}

			stdout, stderr := call("-o", "json", "keys", "create", "-owner", "bob")
			var resp struct{ Secret string }
			var raw map[string]any
			if strings.Count(stdout, "\n") != 1 || json.Unmarshal([]byte(stdout), &resp) != nil || json.Unmarshal([]byte(stdout), &raw) != nil || resp.Secret == "" {
				t.Fatalf("-o json keys create: stdout is not one JSON response:\n%s", stdout)
			}
			if got := raw["ephemeral"] == true; got != tc.ephemeral {
				t.Errorf("-o json keys create: ephemeral %v, want %v: %s", raw["ephemeral"], tc.ephemeral, stdout)
			}
			if got := strings.Contains(stderr, ephemeralWarning); got != tc.ephemeral {
				t.Errorf("-o json keys create: warned on stderr %v, want %v", got, tc.ephemeral)
			}

			stdout, stderr = call("keys", "import", importFile)
			if !strings.HasPrefix(stdout, "imported 1 keys") {
				t.Errorf("keys import: stdout %q", stdout)
			}
			if got := strings.Contains(stderr, ephemeralWarning); got != tc.ephemeral {
				t.Errorf("keys import: warned %v, want %v; stderr:\n%s", got, tc.ephemeral, stderr)
			}
			if strings.Contains(stdout, "warning") {
				t.Errorf("the warning reached stdout: %s", stdout)
			}
		})
	}
}
