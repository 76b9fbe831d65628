package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/internal/config"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/configs.golden")

// TestExampleConfigsUnchanged builds every shipped configuration (and testdata/allfields,
// which sets every key of every capability section) and compares what each builder hands to
// its capability's constructor with testdata/configs.golden: the proof that a change to how
// the config is read builds the same capabilities. Injected dependencies (stores, loggers,
// clocks, meters) and zero values are left out of the dump.
func TestExampleConfigsUnchanged(t *testing.T) {
	env := map[string]string{
		"WARDEN_PEPPER":              "an-example-pepper-that-is-long-enough-0123456789",
		"GITHUB_WEBHOOK_SECRET":      "an-example-github-secret-long-enough",
		"GITHUB_WEBHOOK_SECRET_OLD":  "an-older-github-secret-long-enough!!",
		"GENERIC_SECRET":             "a-generic-webhook-secret-long-enough",
		"IMPORTED_KEY":               "acme_live_0123456789abcdefghijklmn",
		"OAUTH2_SECRET":              "an-oauth2-client-secret",
		"STRIPE_WEBHOOK_SECRET":      "whsec_c3RyaXBlLXNlY3JldC1sb25nLWVub3VnaA==",
		"WARDEN_WEBHOOK_SECRET":      "whsec_c3RhbmRhcmQtc2VjcmV0LWxvbmctZW5vdWdo",
		"SLACK_SIGNING_SECRET":       "a-slack-signing-secret-long-enough",
		"OPS_API_KEY":                "acme_live_0123456789abcdefghijklmnopqrstuv",
		"PARTNER_WEBHOOK_SECRET":     "a-partner-webhook-secret-long-enough",
		"WARDEN_REDIS_PASSWORD":      "unused",
		"WARDEN_ADMIN_API_KEY":       "unused",
		"WARDEN_OAUTH2_CLIENTSECRET": "unused",
	}
	files := []string{
		"../../examples/warden.yaml",
		"../../examples/gateway/warden.yaml",
		envoyExample(t),
		"../../clients/example/warden.yaml",
		"testdata/allfields/warden.yaml",
	}
	files = append(files, kubernetesConfig(t, "../../deploy/kubernetes/warden.yaml"))
	var out strings.Builder
	for _, f := range files {
		name := f
		switch {
		case strings.Contains(f, "kubernetes-"):
			name = "deploy/kubernetes/warden.yaml (ConfigMap warden.yaml)"
		case strings.Contains(f, "envoy-example"):
			name = "examples/envoy/warden.yaml"
		}
		fmt.Fprintf(&out, "== %s\n", strings.TrimPrefix(name, "../../"))
		out.WriteString(strings.ReplaceAll(buildDump(t, f, env), filepath.Dir(f)+"/", "$DIR/"))
	}
	compareGolden(t, "configs.golden", out.String())
}

// compareGolden compares got with testdata/name, or rewrites it with -update.
func compareGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *updateGolden {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("got differs from %s (go test -run %s -update to accept):\n%s", golden, t.Name(), lineDiff(string(want), got))
	}
}

// envoyExample copies examples/envoy as shipped (warden.yaml, its jwks.json and ratelimit
// directory) to a directory of the test.
func envoyExample(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "envoy-example")
	if err := os.CopyFS(dir, os.DirFS("../../examples/envoy")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "warden.yaml")
}

// kubernetesConfig writes the warden.yaml of the manifest's ConfigMap to a file.
func kubernetesConfig(t *testing.T, manifest string) string {
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			if err == io.EOF {
				break
			}
			t.Fatal(err)
		}
		if c, ok := doc.Data["warden.yaml"]; doc.Kind == "ConfigMap" && ok {
			p := filepath.Join(t.TempDir(), "kubernetes-warden.yaml")
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Fatalf("%s: no ConfigMap with warden.yaml", manifest)
	return ""
}

func buildDump(t *testing.T, path string, env map[string]string) string {
	var b strings.Builder
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cfg, err := config.Load(path, lookup)
	if err != nil {
		fmt.Fprintf(&b, "load error: %v\n", err)
		return b.String()
	}
	a := &app{log: slog.New(slog.DiscardHandler), cfg: cfg, env: lookup}
	defer a.close()
	if a.tel, err = newTelemetry(cfg.Telemetry, lookup, nil); err != nil {
		t.Fatal(err)
	}
	a.closers = append(a.closers, a.tel.close)
	if _, err := a.openStores(context.Background()); err != nil {
		t.Fatal(err)
	}
	observeConfig = func(name string, v any) {
		dumpValue(&b, name, reflect.ValueOf(v))
	}
	defer func() { observeConfig = nil }()
	if _, _, err := a.build(context.Background(), cfg); err != nil {
		fmt.Fprintf(&b, "build error: %v\n", err)
	}
	return b.String()
}

// dumpValue writes v's non-zero data fields as "path = value" lines. Functions, channels,
// interfaces (stores, meters) and pointers to structs with no exported field (loggers, cert
// pools, verifiers) are injected dependencies and left out.
func dumpValue(b *strings.Builder, path string, v reflect.Value) {
	if !v.IsValid() || v.IsZero() {
		return
	}
	if s, ok := v.Interface().(fmt.Stringer); ok && v.Kind() != reflect.Struct && v.Kind() != reflect.Pointer {
		fmt.Fprintf(b, "%s = %s\n", path, s.String())
		return
	}
	switch v.Kind() {
	case reflect.Func, reflect.Chan, reflect.Interface, reflect.UnsafePointer:
		return
	case reflect.Pointer:
		dumpValue(b, path, v.Elem())
	case reflect.Struct:
		t := v.Type()
		if s, ok := v.Interface().(fmt.Stringer); ok {
			fmt.Fprintf(b, "%s = %s\n", path, s.String())
			return
		}
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).IsExported() {
				dumpValue(b, path+"."+t.Field(i).Name, v.Field(i))
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem() == reflect.TypeFor[byte]() {
			bs := make([]byte, v.Len())
			reflect.Copy(reflect.ValueOf(bs), v)
			fmt.Fprintf(b, "%s = %x\n", path, bs)
			return
		}
		for i := 0; i < v.Len(); i++ {
			dumpValue(b, fmt.Sprintf("%s[%d]", path, i), v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			dumpValue(b, fmt.Sprintf("%s[%v]", path, k), v.MapIndex(k))
		}
	default:
		fmt.Fprintf(b, "%s = %#v\n", path, v.Interface())
	}
}

// lineDiff lists the lines only in want (-) or only in got (+).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if count[l] > 0 {
			fmt.Fprintf(&b, "- %s\n", l)
			count[l]--
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if count[l] < 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
			count[l]++
		}
	}
	return b.String()
}
