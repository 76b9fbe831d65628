package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/internal/testcred"
)

// buildCtl builds this command and returns the binary's path, so that tests see its exit
// status and what it writes on stderr.
func buildCtl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wardenctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/wardenctl: %v\n%s", err, out)
	}
	return bin
}

// ctlResult is what one run of the wardenctl binary did.
type ctlResult struct {
	stdout, stderr string
	code           int
}

func runCtl(t *testing.T, bin string, env []string, args ...string) ctlResult {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("wardenctl %v: %v", args, err)
	}
	return ctlResult{out.String(), errOut.String(), code}
}

// TestCommandsAgainstWarden runs every command that calls Warden, as the built wardenctl
// binary, against the built Warden binary: what each prints, its exit status, and the errors
// people read (bad flags, missing or weak credentials, a feature not configured, no server).
func TestCommandsAgainstWarden(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the Warden and wardenctl binaries")
	}
	warden, ctl := buildWarden(t), buildCtl(t)
	dir := t.TempDir()
	issuer, err := testcred.NewIssuer(filepath.Join(dir, "jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := testcred.NewKey(ephemeralPepper, authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	addr := startWardenBinary(t, warden, `log: {level: info, format: json}
server: {drain: 1ms, shutdown_timeout: 1s}
authn:
  api_keys:
    environment: live
    pepper: ${WARDENCTL_TEST_PEPPER}
    keys:
      - `+admin.Entry("live", "ops", "acme", "warden-admin")+`
  jwt:
    issuers:
      - {issuer: https://issuer.test, audiences: [warden], claims: {roles: roles}, jwks_file: `+filepath.Join(dir, "jwks.json")+`}
authz:
  roles:
    user: {permissions: ["orders:read"]}
  routes:
    - {name: orders, method: GET, path: /v1/orders, action: orders:read,
       rate_limits: [{domain: api, descriptors: [{key: user, from: principal.subject}]}]}
rate_limit:
  domains:
    - domain: api
      descriptors:
        - key: user
          rate_limit: {unit: minute, requests_per_unit: 3, algorithm: fixed_window}
`)
	asAdmin := []string{"WARDEN_API_KEY=" + admin.Key}
	call := func(t *testing.T, env []string, args ...string) ctlResult {
		t.Helper()
		return runCtl(t, ctl, env, append([]string{"-addr", addr}, args...)...)
	}
	ok := func(t *testing.T, env []string, args ...string) ctlResult {
		t.Helper()
		r := call(t, env, args...)
		if r.code != 0 {
			t.Fatalf("wardenctl %v: exit %d, want 0; stderr:\n%s", args, r.code, r.stderr)
		}
		return r
	}
	// fails runs a command that must exit 1 and say want on stderr, with nothing on stdout.
	fails := func(t *testing.T, env []string, want string, args ...string) {
		t.Helper()
		r := call(t, env, args...)
		if r.code != 1 || !strings.Contains(r.stderr, want) || r.stdout != "" {
			t.Errorf("wardenctl %v: exit %d, stdout %q, stderr %q; want exit 1 and %q on stderr only", args, r.code, r.stdout, r.stderr, want)
		}
	}
	type key struct {
		Secret string
		Key    struct{ ID string }
	}
	jsonOf := func(t *testing.T, r ctlResult, v any) {
		t.Helper()
		if strings.Count(r.stdout, "\n") != 1 {
			t.Fatalf("-o json: %d lines on stdout, want 1:\n%s", strings.Count(r.stdout, "\n"), r.stdout)
		}
		if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
			t.Fatalf("-o json: %v\n%s", err, r.stdout)
		}
	}
	checkOrders := func(t *testing.T, secret string, extra ...string) string {
		t.Helper()
		args := append([]string{"check", "-path", "/v1/orders", "-H", "authorization: Bearer " + secret}, extra...)
		return strings.SplitN(ok(t, nil, args...).stdout, "\n", 2)[0]
	}

	// keys create: the secret once on stdout (indented JSON), the warning on stderr.
	r := ok(t, asAdmin, "keys", "create", "-owner", "alice", "-tenant", "acme", "-roles", "user", "-description", "test")
	var alice key
	if err := json.Unmarshal([]byte(r.stdout), &alice); err != nil || alice.Secret == "" || alice.Key.ID == "" {
		t.Fatalf("keys create: stdout %q is not the created key (%v)", r.stdout, err)
	}
	if !strings.Contains(r.stderr, "shown once") {
		t.Errorf("keys create: stderr %q, want the shown-once note", r.stderr)
	}
	// -api-key works as $WARDEN_API_KEY does.
	var list struct{ Keys []struct{ ID, Owner string } }
	jsonOf(t, ok(t, nil, "-api-key", admin.Key, "-o", "json", "keys", "list", "-owner", "alice"), &list)
	if len(list.Keys) != 1 || list.Keys[0].ID != alice.Key.ID || list.Keys[0].Owner != "alice" {
		t.Errorf("keys list -owner alice: got %+v, want alice's key %s", list.Keys, alice.Key.ID)
	}

	// check: a dry run (cost 0) allows alice and consumes nothing; a decision is not an error.
	if got := checkOrders(t, alice.Secret); got != "ALLOWED" {
		t.Errorf("check with alice's key: first line %q, want ALLOWED", got)
	}
	if got := strings.SplitN(ok(t, nil, "check", "-path", "/v1/orders").stdout, "\n", 2)[0]; !strings.HasPrefix(got, "DENIED") || !strings.Contains(got, "HTTP 401") {
		t.Errorf("check without credentials: first line %q, want DENIED … (HTTP 401)", got)
	}

	// limits get / reset read and reset what check -cost consumed.
	remaining := func(t *testing.T) string { // protojson writes int64 as a string
		t.Helper()
		var got struct{ Statuses []struct{ Remaining string } }
		jsonOf(t, ok(t, asAdmin, "-o", "json", "limits", "get", "-domain", "api", "-d", "user=alice"), &got)
		if len(got.Statuses) != 1 {
			t.Fatalf("limits get: %d statuses, want 1", len(got.Statuses))
		}
		return got.Statuses[0].Remaining
	}
	if got := remaining(t); got != "3" {
		t.Errorf("limits get before any request: remaining %v, want 3 (check's dry run consumes nothing)", got)
	}
	checkOrders(t, alice.Secret, "-cost", "2")
	if got := remaining(t); got != "1" {
		t.Errorf("limits get after check -cost 2: remaining %v, want 1", got)
	}
	if r := ok(t, asAdmin, "limits", "reset", "-domain", "api", "-d", "user=alice"); r.stdout != "reset\n" {
		t.Errorf("limits reset: stdout %q, want reset", r.stdout)
	}
	if got := remaining(t); got != "3" {
		t.Errorf("limits get after reset: remaining %v, want 3", got)
	}

	// keys rotate: a new secret that works; keys revoke: it stops working at once.
	r = ok(t, asAdmin, "-o", "json", "keys", "rotate", "-id", alice.Key.ID)
	var rotated key
	jsonOf(t, r, &rotated)
	if rotated.Secret == "" || rotated.Secret == alice.Secret || !strings.Contains(r.stderr, "new secret") {
		t.Fatalf("keys rotate: stdout %q, stderr %q; want a new secret and the shown-once note", r.stdout, r.stderr)
	}
	if got := checkOrders(t, rotated.Secret); got != "ALLOWED" {
		t.Errorf("check with the rotated key: %q, want ALLOWED", got)
	}
	var revoked struct{ Key struct{ ID string } }
	jsonOf(t, ok(t, asAdmin, "-o", "json", "keys", "revoke", "-id", rotated.Key.ID), &revoked)
	if revoked.Key.ID != rotated.Key.ID {
		t.Errorf("keys revoke: answered for key %q, want %q", revoked.Key.ID, rotated.Key.ID)
	}
	if got := checkOrders(t, rotated.Secret); !strings.Contains(got, "DENIED") || !strings.Contains(got, "REVOKED") {
		t.Errorf("check with the revoked key: %q, want DENIED … REVOKED", got)
	}

	// keys rotate -grace 0: alice's first key, still in its default grace, stops at once.
	if got := checkOrders(t, alice.Secret); got != "ALLOWED" {
		t.Errorf("check with alice's key in its rotation grace: %q, want ALLOWED", got)
	}
	var again key
	jsonOf(t, ok(t, asAdmin, "-o", "json", "keys", "rotate", "-id", alice.Key.ID, "-grace", "0s"), &again)
	if again.Secret == "" || again.Secret == rotated.Secret {
		t.Errorf("keys rotate -grace 0s: secret %q, want a new one", again.Secret)
	}
	if got := checkOrders(t, alice.Secret); !strings.Contains(got, "DENIED") || !strings.Contains(got, "REVOKED") {
		t.Errorf("check with the key rotated with -grace 0s: %q, want DENIED … REVOKED", got)
	}
	if got := checkOrders(t, again.Secret); got != "ALLOWED" {
		t.Errorf("check with its new key: %q, want ALLOWED", got)
	}

	// tokens revoke: a JWT of the configured issuer stops authenticating.
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, err := issuer.Token(map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "bob",
		"roles": []string{"user"}, "exp": exp.Unix(), "iat": time.Now().Unix(), "jti": "j-1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := checkOrders(t, tok); got != "ALLOWED" {
		t.Fatalf("check with bob's JWT: %q, want ALLOWED", got)
	}
	var tr map[string]any
	jsonOf(t, ok(t, asAdmin, "-o", "json", "tokens", "revoke", "-jti", "j-1", "-exp", exp.Format(time.RFC3339)), &tr)
	if tr["revoked"] != true || tr["jti"] != "j-1" {
		t.Errorf("tokens revoke -o json: got %v", tr)
	}
	if got := checkOrders(t, tok); !strings.Contains(got, "REVOKED") {
		t.Errorf("check with the revoked JWT: %q, want DENIED … REVOKED", got)
	}

	// Errors: Warden's refusals name the gRPC code; bad flags never reach the server.
	fails(t, nil, "wardenctl: Unauthenticated: ", "keys", "list", "-owner", "alice")
	fails(t, []string{"WARDEN_API_KEY=" + again.Secret}, "wardenctl: PermissionDenied: ", "keys", "list", "-owner", "alice")
	fails(t, asAdmin, "wardenctl: -owner is required", "keys", "create")
	fails(t, asAdmin, "flag provided but not defined: -bogus", "keys", "create", "-owner", "a", "-bogus")
	fails(t, asAdmin, "wardenctl: -env must be live or test", "keys", "create", "-owner", "a", "-env", "prod")
	fails(t, asAdmin, "wardenctl: -id is required", "keys", "rotate")
	fails(t, asAdmin, "wardenctl: -id is required", "keys", "revoke")
	fails(t, asAdmin, "wardenctl: NotFound: ", "keys", "revoke", "-id", "no-such-key")
	// A grace longer than the server's authn.api_keys.rotation_grace (24h here) is refused.
	fails(t, asAdmin, "wardenctl: InvalidArgument: grace: must be between 0 and 24h0m0s", "keys", "rotate", "-id", again.Key.ID, "-grace", "25h")
	fails(t, asAdmin, "wardenctl: -jti and -exp are required", "tokens", "revoke", "-jti", "j-2")
	fails(t, asAdmin, "wardenctl: -exp: ", "tokens", "revoke", "-jti", "j-2", "-exp", "tomorrow")
	fails(t, asAdmin, "wardenctl: -domain and at least one -d are required", "limits", "get", "-domain", "api")
	fails(t, asAdmin, `descriptor entry "user" is not key=value`, "limits", "reset", "-domain", "api", "-d", "user")
	fails(t, asAdmin, "wardenctl: -path is required", "check")
	fails(t, asAdmin, `header "authorization" is not "name: value"`, "check", "-path", "/", "-H", "authorization")
	fails(t, asAdmin, `unknown command "keys frob"`, "keys", "frob")
	fails(t, asAdmin, "-o must be text or json", "-o", "yaml", "keys", "list")
	if r := call(t, nil); r.code != 1 || !strings.Contains(r.stderr, "usage: wardenctl") {
		t.Errorf("no command: exit %d, stderr %q; want exit 1 and the usage", r.code, r.stderr)
	}
}

// TestServerDown: with no Warden at -addr, a command that calls it exits 1 and says which
// address it could not reach, within its -timeout.
func TestServerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the wardenctl binary")
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	ctl := buildCtl(t)
	for _, args := range [][]string{
		{"keys", "list", "-owner", "alice"},
		{"check", "-path", "/v1/orders"},
		{"limits", "get", "-domain", "api", "-d", "user=alice"},
	} {
		r := runCtl(t, ctl, []string{"WARDEN_API_KEY=k"}, append([]string{"-addr", addr, "-timeout", "3s"}, args...)...)
		if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "cannot reach Warden at "+addr) {
			t.Errorf("%v with no server: exit %d, stdout %q, stderr %q; want exit 1 naming %s", args, r.code, r.stdout, r.stderr, addr)
		}
	}
}
