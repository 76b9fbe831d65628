package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/service"
)

// importServer serves AdminService on a loopback port with API keys that accept
// acme_live_/acme_test_ keys, and returns its address, an admin key and the key set.
func importServer(t *testing.T) (addr, adminKey string, keys *authn.APIKeys) {
	t.Helper()
	pepper, err := authn.NewPepper(bytes.Repeat([]byte("p"), 32))
	if err != nil {
		t.Fatal(err)
	}
	keys, err = authn.NewAPIKeys(authn.APIKeysConfig{Store: &authn.MemoryKeyStore{}, Pepper: pepper, Env: authn.EnvLive,
		Environments: []authn.Environment{authn.EnvLive, authn.EnvTest},
		Imported:     []authn.ImportedFormat{{Prefix: "acme_live_", Env: authn.EnvLive}, {Prefix: "acme_test_", Env: authn.EnvTest}},
		Logger:       slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	adminKey, _, err = keys.Create(context.Background(), authn.KeySpec{Owner: "ops", Roles: []string{"warden-admin"}})
	if err != nil {
		t.Fatal(err)
	}
	au, err := authn.NewAuthenticator(authn.Config{APIKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(service.Config{Logger: slog.New(slog.DiscardHandler), Deps: &service.Deps{
		Authn: &service.Authn{Authenticator: au, APIKeys: keys, AdminRoles: []string{"warden-admin"}}}})
	gs := grpc.NewServer()
	wardenv1.RegisterAdminServiceServer(gs, service.NewAdmin(srv, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String(), adminKey, keys
}

func TestKeysImport(t *testing.T) {
	addr, adminKey, keys := importServer(t)
	ctx := context.Background()
	dir := t.TempDir()
	live, test := "acme_live_"+strings.Repeat("L", 32), "acme_test_"+strings.Repeat("T", 32)
	csvFile := filepath.Join(dir, "keys.csv")
	if err := os.WriteFile(csvFile, []byte("key,owner,tenant,roles,scopes,tier,expires\n"+
		live+",alice,acme,reader writer,read,paid,2099-01-01T00:00:00Z\n"+
		"not-a-key,bob,acme,,,,\n"+
		live+",carol,acme,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonlFile := filepath.Join(dir, "keys.jsonl")
	if err := os.WriteFile(jsonlFile, []byte(`{"key":"`+test+`","owner":"dave","roles":["reader"],"scopes":["read"]}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	err := run(ctx, []string{"-addr", addr, "-api-key", adminKey, "keys", "import", "-batch", "2", "-workers", "1", csvFile}, nil, &stdout, &stderr, nil)
	if err == nil || !strings.Contains(err.Error(), "2 keys refused") {
		t.Errorf("import of a CSV with a bad key and a repeated one: error = %v, want 2 keys refused", err)
	}
	for _, want := range []string{"line 3: the key matches no configured imported key format", "line 4: already stored"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr %q does not report %q", stderr.String(), want)
		}
	}
	if strings.Contains(stderr.String()+stdout.String(), live) {
		t.Errorf("wardenctl printed a key")
	}
	stdout.Reset()
	if err := run(ctx, []string{"-addr", addr, "-api-key", adminKey, "keys", "import", jsonlFile}, nil, &stdout, io.Discard, nil); err != nil {
		t.Fatalf("import of a JSONL file: %v", err)
	}
	if !strings.HasPrefix(stdout.String(), "imported 1 keys, 0 already stored, 0 refused") {
		t.Errorf("JSONL import summary: %q", stdout.String())
	}

	for _, tt := range []struct {
		key, subject string
		env          authn.Environment
		scopes       []string
	}{{live, "alice", authn.EnvLive, []string{"read"}}, {test, "dave", authn.EnvTest, []string{"read"}}} {
		p, r := keys.Authenticate(ctx, tt.key)
		if r != authn.OK || p.Subject != tt.subject || p.Env != tt.env || fmt.Sprint(p.Scopes) != fmt.Sprint(tt.scopes) {
			t.Errorf("imported key of %s: %v %+v", tt.subject, r, p)
		}
	}
	p, _ := keys.Authenticate(ctx, live)
	if !p.ExpiresAt.Equal(time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)) || fmt.Sprint(p.Roles) != "[reader writer]" || p.Tier != "paid" {
		t.Errorf("alice's imported key: principal %+v, want roles [reader writer], tier paid, expiry 2099", p)
	}
}

func TestKeysDigest(t *testing.T) {
	var stdout bytes.Buffer
	env := func(k string) (string, bool) { return strings.Repeat("p", 32), k == "PEPPER" }
	key := "acme_live_" + strings.Repeat("L", 32)
	if err := run(context.Background(), []string{"keys", "digest", "-owner", "alice", "-pepper-env", "PEPPER"},
		strings.NewReader(key+"\n"), &stdout, io.Discard, env); err != nil {
		t.Fatal(err)
	}
	pepper, _ := authn.NewPepper(bytes.Repeat([]byte("p"), 32))
	d := pepper.DigestImported(key)
	if want := fmt.Sprintf("- digest: %x\n  environment: live\n  owner: \"alice\"\n", d[:]); stdout.String() != want {
		t.Errorf("keys digest printed %q, want %q", stdout.String(), want)
	}
}

// FuzzImportRows: whatever an import file holds, reading it ends (EOF or an error) without a
// panic, and a row that converts has a key and an owner.
func FuzzImportRows(f *testing.F) {
	f.Add("key,owner,roles\nacme_live_x,alice,a b\n")
	f.Add(`{"key":"k","owner":"o","expires":"2030-01-01T00:00:00Z"}` + "\n\n{")
	f.Add("key\n\"unterminated")
	f.Fuzz(func(t *testing.T, in string) {
		readers := []func() (importRow, int, error){jsonlRows(strings.NewReader(in))}
		if next, err := csvRows(strings.NewReader(in)); err == nil {
			readers = append(readers, next)
		}
		for _, next := range readers {
			for range 10_000 {
				row, _, err := next()
				if err != nil {
					break
				}
				if k, err := row.proto(); err == nil && (k.GetKey() == "" || k.GetOwner() == "") {
					t.Fatalf("row %+v converted without a key or an owner", row)
				}
			}
		}
	})
}
