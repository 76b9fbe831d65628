package config_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/config"
)

func env(m map[string]string) config.Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadNoFileGivesDefaults(t *testing.T) {
	f, err := config.Load("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Server.GRPCAddr != "127.0.0.1:50051" || f.Server.AdminAddr != "127.0.0.1:9090" {
		t.Errorf("listeners: got %q %q, want loopback defaults", f.Server.GRPCAddr, f.Server.AdminAddr)
	}
	if f.Redis.Mode != "" {
		t.Errorf("redis mode: got %q, want none (embedded store)", f.Redis.Mode)
	}
}

func TestParseErrorsNameFileLineField(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // the whole one-line error
	}{
		{
			name: "malformed",
			yaml: "server:\n\tgrpc_addr: x\n",
			want: "warden.yaml:2: found character that cannot start any token",
		},
		{
			name: "unknown key",
			yaml: "server:\n  grpc_addr: 127.0.0.1:1\n  grcp_port: 5\n",
			want: `warden.yaml:3: unknown field "grcp_port"`,
		},
		{
			name: "unknown top-level key",
			yaml: "log:\n  level: info\nredsi:\n  addrs: []\n",
			want: `warden.yaml:3: unknown field "redsi"`,
		},
		{
			name: "missing secret env var",
			yaml: "redis:\n  addrs: [127.0.0.1:6379]\n  password: ${REDIS_PW}\n",
			want: "warden.yaml:3: redis.password: environment variable REDIS_PW is not set",
		},
		{
			name: "inline secret refused",
			yaml: "redis:\n  addrs: [127.0.0.1:6379]\n  password: hunter2\n",
			want: "warden.yaml:3: redis.password: secrets are never written inline: use ${ENV_VAR} or file:/path",
		},
		{
			name: "bad value",
			yaml: "log:\n  level: loud\n",
			want: `warden.yaml:2: log.level: must be debug, info, warn or error, not "loud"`,
		},
		{
			name: "wrong type",
			yaml: "server:\n  drain: soon\n",
			want: `warden.yaml:2: server.drain: want a duration (e.g. 500ms, 30s, 1m30s), not "soon"`,
		},
		{
			name: "wrong type in a list",
			yaml: "redis:\n  addrs:\n    - [a]\n",
			want: `warden.yaml:3: redis.addrs[0]: want a string, not a list`,
		},
		{
			name: "wrong kind",
			yaml: "redis:\n  addrs: 127.0.0.1:6379\n",
			want: `warden.yaml:2: redis.addrs: want a list, not "127.0.0.1:6379"`,
		},
		{
			name: "redis mode",
			yaml: "redis:\n  mode: ring\n  addrs: [a:1]\n",
			want: `warden.yaml:2: redis.mode: must be single, sentinel or cluster, not "ring"`,
		},
		{
			name: "redis address",
			yaml: "redis:\n  addrs:\n    - 127.0.0.1:6379\n    - nohost\n  mode: cluster\n",
			want: `warden.yaml:4: redis.addrs[1]: "nohost" is not host:port`,
		},
		{
			name: "otlp protocol",
			yaml: "telemetry:\n  otlp:\n    protocol: thrift\n",
			want: `warden.yaml:3: telemetry.otlp.protocol: must be grpc or http/protobuf, not "thrift"`,
		},
		{
			name: "otlp endpoint",
			yaml: "telemetry:\n  otlp:\n    endpoint: collector:4317\n",
			want: `warden.yaml:3: telemetry.otlp.endpoint: must be a URL (http://host:port or https://host:port), not "collector:4317"`,
		},
		{
			name: "otlp header inline",
			yaml: "telemetry:\n  otlp:\n    headers: [{name: api-key, value: hunter2}]\n",
			want: "warden.yaml:3: telemetry.otlp.headers[0].value: secrets are never written inline: use ${ENV_VAR} or file:/path",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.Parse("warden.yaml", []byte(tt.yaml), env(nil))
			if err == nil {
				t.Fatalf("got nil error, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

func TestSecretsResolve(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("w.yaml", []byte("redis:\n  addrs: [127.0.0.1:1]\n  password: file:"+pw+"\n  sentinel_password: ${SP}\n"),
		env(map[string]string{"SP": "from-env"}))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Redis.Password.Reveal(); got != "from-file" {
		t.Errorf("password: got %q, want %q", got, "from-file")
	}
	if got := f.Redis.SentinelPassword.Reveal(); got != "from-env" {
		t.Errorf("sentinel password: got %q, want %q", got, "from-env")
	}
	if s := f.Redis.Password.String(); strings.Contains(s, "from-file") {
		t.Errorf("String leaks the secret: %q", s)
	}
}

type sectionCfg struct {
	Window time.Duration `yaml:"window"`
	Items  []struct {
		Name   string        `yaml:"name"`
		Secret config.Secret `yaml:"secret"`
	} `yaml:"items"`
}

func TestSectionDecodeStrict(t *testing.T) {
	src := "# comment\n\nwebhooks:\n  window: 5s\n  items:\n    - name: a\n      secret: ${S}\n\n    - name: b\n      colour: red\n"
	f, err := config.Parse("w.yaml", []byte(src), env(map[string]string{"S": "x"}))
	if err != nil {
		t.Fatal(err)
	}
	var c sectionCfg
	err = f.Webhooks.Decode("webhooks", &c)
	if got, want := errString(err), `w.yaml:10: webhooks.items[1]: unknown field "colour"`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := f.Webhooks.FieldLine("webhooks.items[1].name"), 9; got != want {
		t.Errorf("FieldLine: got %d, want %d", got, want)
	}

	f, err = config.Parse("w.yaml", []byte("webhooks:\n  items:\n    - name: a\n      secret: ${MISSING}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Webhooks.Decode("webhooks", &c)
	if got, want := errString(err), "w.yaml:4: webhooks.items[0].secret: environment variable MISSING is not set"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestReleaseDropsSectionTrees checks that Release frees the sections' YAML trees (most of an
// idle server's heap with many static keys) and keeps what is asked of a section afterwards.
func TestReleaseDropsSectionTrees(t *testing.T) {
	var b strings.Builder
	b.WriteString("authz:\n  routes: []\nauthn:\n  api_keys:\n    keys:\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "      - {id: k%d, digest: d%d, environment: live, owner: user-%d, tenant: acme, roles: [user]}\n", i, i, i)
	}
	f, err := config.Parse("warden.yaml", []byte(b.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	held := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := held()
	line, zero := f.Authn.Line(), f.Webhooks.IsZero()
	f.Release()
	after := held()
	// 5000 entries of 6 fields: over 60,000 nodes of more than 100 bytes each.
	if before < after || before-after < 4<<20 {
		t.Errorf("heap held: got %d bytes before Release and %d after, want at least 4 MiB freed", before, after)
	}
	if f.Authn.IsZero() || f.Authn.Line() != line || f.Webhooks.IsZero() != zero {
		t.Errorf("after Release: authn zero %v line %d (want false, %d), webhooks zero %v (want %v)",
			f.Authn.IsZero(), f.Authn.Line(), line, f.Webhooks.IsZero(), zero)
	}
	if got := f.Authn.FieldLine("authn.api_keys.keys[3]"); got != line {
		t.Errorf("FieldLine after Release: got %d, want the section's line %d", got, line)
	}
	var v map[string]any
	if err := f.Authn.Decode("authn", &v); err == nil {
		t.Error("Decode after Release: got no error")
	}
	runtime.KeepAlive(f)
}
