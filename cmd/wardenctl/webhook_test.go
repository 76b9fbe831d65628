package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWebhookSignThenVerify round-trips every scheme through the CLI: what `webhook sign`
// prints, `webhook verify` accepts, and a changed body is refused.
func TestWebhookSignThenVerify(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	body := filepath.Join(dir, "body")
	if err := os.WriteFile(body, []byte(`{"id":"evt_1","type":"ping"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"standard_webhooks": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"stripe":            "whsec_a-stripe-secret-long-enough-123",
		"github":            "a-github-secret-long-enough-1234",
		"slack":             "8f742231b10e8888abcd99yyyzzz85a5",
		"generic":           "a-generic-secret-long-enough-123",
	}
	for scheme, secret := range secrets {
		t.Run(scheme, func(t *testing.T) {
			if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			common := []string{"-scheme", scheme, "-secret-file", secretFile, "-body", body}
			if scheme == "generic" {
				common = append(common, "-generic-signature-header", "x-sig", "-generic-timestamp-header", "x-ts",
					"-generic-template", "{timestamp}.{body}")
			}
			var out, errOut bytes.Buffer
			err := run(context.Background(), append(append([]string{"webhook", "sign"}, common...), "-id", "msg_1"),
				strings.NewReader(""), &out, &errOut, func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatalf("sign: %v %s", err, errOut.String())
			}
			verify := append([]string{"webhook", "verify"}, common...)
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				verify = append(verify, "-H", line)
			}
			out.Reset()
			if err := run(context.Background(), verify, strings.NewReader(""), &out, &errOut, nil); err != nil {
				t.Fatalf("verify the signed delivery: %v", err)
			}
			if !strings.HasPrefix(out.String(), "valid") {
				t.Fatalf("verify printed %q, want valid", out.String())
			}
			if err := os.WriteFile(body, []byte(`{"id":"evt_1","type":"pong"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(body, []byte(`{"id":"evt_1","type":"ping"}`), 0o600)
			err = run(context.Background(), verify, strings.NewReader(""), &out, &errOut, nil)
			if err == nil || !strings.Contains(err.Error(), "no_matching_signature") {
				t.Fatalf("verify a changed body: got %v, want no_matching_signature", err)
			}
		})
	}
}
