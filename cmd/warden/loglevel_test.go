package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// TestSetLogLevelAtRunTime: an admin lowers the level to error, and an info line (a config
// reload) is no longer written while audit lines still are; back to info, it is written again.
func TestSetLogLevelAtRunTime(t *testing.T) {
	dir := t.TempDir()
	adminKey, adminEntry := staticKey(t, "ops", "warden-admin")
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte("authn:\n  api_keys:\n    environment: live\n    pepper: ${PEPPER}\n    keys:\n"+adminEntry+"log:\n  level: info\n"))
	r := start(t, map[string]string{"PEPPER": testPepper}, "-config", p)
	admin := wardenv1.NewAdminServiceClient(dial(t, r.GRPC))
	asAdmin := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+adminKey)
	reloaded := func() int {
		t.Helper()
		if _, err := admin.ReloadConfig(asAdmin, &wardenv1.ReloadConfigRequest{}); err != nil {
			t.Fatal(err)
		}
		return strings.Count(r.logs.String(), `"msg":"config reloaded"`)
	}
	if n := reloaded(); n != 1 {
		t.Fatalf("at info: %d reload lines, want 1", n)
	}

	resp, err := admin.SetLogLevel(asAdmin, &wardenv1.SetLogLevelRequest{Level: "error"})
	if err != nil || resp.Level != "error" || resp.Previous != "info" {
		t.Fatalf("SetLogLevel(error): got %v, %v", resp, err)
	}
	if n := reloaded(); n != 1 {
		t.Errorf("at error: %d reload lines, want still 1", n)
	}
	// Audit lines are written whatever the level: the admin calls just made.
	if n := strings.Count(r.logs.String(), `"log":"audit","audit_version":1,"rpc":"ReloadConfig"`); n != 2 {
		t.Errorf("at error: %d audit lines of ReloadConfig, want 2\n%s", n, r.logs)
	}
	if !strings.Contains(r.logs.String(), `"msg":"log level changed","log":"audit","audit_version":1,"rpc":"SetLogLevel","from":"info","to":"error"`) {
		t.Errorf("no audit line for the level change:\n%s", r.logs)
	}

	if resp, err = admin.SetLogLevel(asAdmin, &wardenv1.SetLogLevelRequest{}); err != nil || resp.Level != "error" {
		t.Fatalf("SetLogLevel(read): got %v, %v", resp, err)
	}
	if _, err = admin.SetLogLevel(asAdmin, &wardenv1.SetLogLevelRequest{Level: "loud"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("SetLogLevel(loud): got %v, want INVALID_ARGUMENT", err)
	}
	if _, err = admin.SetLogLevel(context.Background(), &wardenv1.SetLogLevelRequest{Level: "debug"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("SetLogLevel without credentials: got %v, want UNAUTHENTICATED", err)
	}
	if _, err = admin.SetLogLevel(asAdmin, &wardenv1.SetLogLevelRequest{Level: "info"}); err != nil {
		t.Fatal(err)
	}
	if n := reloaded(); n != 2 {
		t.Errorf("back at info: %d reload lines, want 2", n)
	}
}
