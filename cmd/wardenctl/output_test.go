package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJSONOutput runs the commands that need no server with -o json: each writes exactly one
// JSON object on one line of stdout, and nothing else there.
func TestJSONOutput(t *testing.T) {
	dir := t.TempDir()
	secret, body := filepath.Join(dir, "secret"), filepath.Join(dir, "body")
	for name, content := range map[string]string{secret: "a-github-secret-long-enough-1234\n", body: `{"id":"evt_1"}`} {
		if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env := func(k string) (string, bool) {
		if k == "PEPPER" {
			return "a-pepper-of-at-least-32-bytes-0123456789abcdef", true
		}
		return "", false
	}
	runJSON := func(t *testing.T, args ...string) map[string]any {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"-o", "json"}, args...), strings.NewReader(""), &out, &errOut, env); err != nil {
			t.Fatalf("%v: %v %s", args, err, errOut.String())
		}
		if lines := strings.Count(out.String(), "\n"); lines != 1 {
			t.Fatalf("%v: got %d lines on stdout, want 1:\n%s", args, lines, out.String())
		}
		var v map[string]any
		if err := json.Unmarshal(out.Bytes(), &v); err != nil {
			t.Fatalf("%v: stdout is not one JSON object: %v\n%s", args, err, out.String())
		}
		return v
	}

	gen := runJSON(t, "keys", "generate", "-owner", "alice", "-roles", "reader,writer", "-pepper-env", "PEPPER")
	entry, _ := gen["entry"].(map[string]any)
	if key, _ := gen["key"].(string); !strings.HasPrefix(key, "sk-live-") || entry["owner"] != "alice" || entry["digest"] == "" {
		t.Fatalf("keys generate: got %v, want the key and its entry", gen)
	}
	sign := runJSON(t, "webhook", "sign", "-scheme", "github", "-secret-file", secret, "-body", body, "-id", "d-1")
	headers, _ := sign["headers"].(map[string]any)
	if len(headers) == 0 {
		t.Fatalf("webhook sign: got %v, want headers", sign)
	}
	verify := []string{"webhook", "verify", "-scheme", "github", "-secret-file", secret, "-body", body}
	for k, v := range headers {
		verify = append(verify, "-H", k+": "+v.(string))
	}
	if v := runJSON(t, verify...); v["valid"] != true {
		t.Fatalf("webhook verify: got %v, want valid", v)
	}

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"-o", "yaml", "webhook", "sign"}, strings.NewReader(""), &out, &errOut, env); err == nil || !strings.Contains(err.Error(), "-o must be") {
		t.Fatalf("-o yaml: got %v, want an error naming the choices", err)
	}
}
