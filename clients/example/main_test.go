package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The demo pepper and keys of warden.yaml, as its comment and the package comment give them.
const (
	demoPepper = "example-pepper-not-a-secret-0123456789abcdef"
	aliceKey   = "sk-test-jJynqe5WkfMZ_DOS6e0DY9Y710CBzC5ID3M4enLUS"
	bobKey     = "sk-test-vAxFXU4eaCBl_hBVBideV4AvOCNou4dqPHM3aj8cR"
)

// TestExample runs what the package comment says: Warden with warden.yaml, then the example
// in front of it, and asks both of its APIs as alice, as bob and without a key.
func TestExample(t *testing.T) {
	wardenAddr := startWarden(t)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := run(ctx, []string{"-warden", wardenAddr, "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var addrs struct{ Msg, GRPC, HTTP string }
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &addrs) == nil && addrs.Msg == "example listening" {
			break
		}
	}
	if addrs.HTTP == "" {
		t.Fatalf("the example did not report listening: %v", sc.Err())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	for _, tc := range []struct {
		key      string
		want     int
		wantBody string
	}{
		{aliceKey, 200, "order o-1 for alice\n"},
		{bobKey, 403, `{"error":{"code":403,"message":"permission denied"}}` + "\n"},
		{"", 401, `{"error":{"code":401,"message":"unauthenticated"}}` + "\n"},
	} {
		req, _ := http.NewRequest("GET", "http://"+addrs.HTTP+"/v1/orders/o-1", nil)
		if tc.key != "" {
			req.Header.Set("Authorization", "Bearer "+tc.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want || string(body) != tc.wantBody {
			t.Errorf("GET /v1/orders/o-1 with %.16q: got %d %q, want %d %q", tc.key, resp.StatusCode, body, tc.want, tc.wantBody)
		}
		if tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 without WWW-Authenticate: %v", resp.Header)
		}
	}

	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		key  string
		want codes.Code
		out  string
	}{
		{aliceKey, codes.OK, "order o-1 for alice"},
		{bobKey, codes.PermissionDenied, ""},
		{"", codes.Unauthenticated, ""},
	} {
		cctx := context.Background()
		if tc.key != "" {
			cctx = metadata.AppendToOutgoingContext(cctx, "authorization", "Bearer "+tc.key)
		}
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(cctx, "/example.v1.Orders/Get", wrapperspb.String("o-1"), out)
		if status.Code(err) != tc.want || out.GetValue() != tc.out {
			t.Errorf("Get with %.16q: got (%q, %v), want (%q, %v)", tc.key, out.GetValue(), err, tc.out, tc.want)
		}
	}
}

// startWarden builds cmd/warden, runs it with warden.yaml and the demo pepper on a free
// loopback port, and returns its gRPC address.
func startWarden(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warden")
	build := exec.Command("go", "build", "-o", bin, "github.com/wardenhq/warden/cmd/warden")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/warden: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-config", "warden.yaml", "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "WARDEN_PEPPER=" + demoPepper}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// addr receives the address, or Warden's log if it exits before listening.
	addr := make(chan string, 1)
	go func() {
		var log strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, GRPC string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "warden listening" {
				addr <- rec.GRPC
				_, _ = io.Copy(io.Discard, stderr)
				return
			}
			log.WriteString(sc.Text() + "\n")
		}
		addr <- "exited: " + log.String()
	}()
	select {
	case a := <-addr:
		if strings.HasPrefix(a, "exited: ") {
			t.Fatalf("warden exited before listening:\n%s", a)
		}
		return a
	case <-time.After(30 * time.Second):
		t.Fatal("warden did not report listening within 30s")
	}
	return ""
}
