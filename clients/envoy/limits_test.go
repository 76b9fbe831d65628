package envoy_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/service"
)

// countingKeys is the memory key store, counting lookups: proof of authentication work.
type countingKeys struct {
	authn.MemoryKeyStore
	lookups atomic.Int64
}

func (s *countingKeys) Key(ctx context.Context, id string) (authn.KeyRecord, error) {
	s.lookups.Add(1)
	return s.MemoryKeyStore.Key(ctx, id)
}

// TestOversizedAndForgedHeadersRefusedBeforeAuthentication sends requests no HTTP message can
// carry (10,000 headers, 200 KB of them, NUL, CR or LF in a name or value) with a valid API
// key that was never looked up, through ext_authz and warden.v1 Check on one real server: each
// is refused as INVALID_ARGUMENT (ext_authz: denied 400) with no key lookup. A malformed path
// is INVALID_ARGUMENT too, not PERMISSION_DENIED.
func TestOversizedAndForgedHeadersRefusedBeforeAuthentication(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pepper, err := authn.NewPepper([]byte("a-test-pepper-of-at-least-32-bytes-0123"))
	if err != nil {
		t.Fatal(err)
	}
	store := &countingKeys{}
	ctx := context.Background()
	newKey := func() string {
		key, parsed, err := authn.NewAPIKey(authn.EnvLive)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Put(ctx, authn.KeyRecord{ID: parsed.ID, Env: authn.EnvLive, Digest: pepper.Digest(parsed.Secret),
			Owner: "alice", Roles: []string{"user"}}); err != nil {
			t.Fatal(err)
		}
		return key
	}
	keys, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: store, Pepper: pepper, Env: authn.EnvLive, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	an, err := authn.NewAuthenticator(authn.Config{APIKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Compile(authz.Config{
		Roles:  map[string]authz.RoleConfig{"user": {Permissions: []string{"orders:read"}}},
		Routes: []authz.RouteConfig{{Name: "orders", Method: "GET", Path: "/v1/orders", Action: "orders:read", ResourceType: "order"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Policy: pol, Authn: &service.Authn{Authenticator: an, APIKeys: keys}}})

	// One real gRPC server with both APIs, as cmd/warden serves them.
	cc := serveGRPC(t, func(gs *grpc.Server) {
		wardenv1.RegisterWardenServiceServer(gs, srv)
		authv3.RegisterAuthorizationServer(gs, envoy.NewAuthServer(srv, envoy.AuthConfig{Logger: quiet, FailureMode: envoy.FailOpen}))
	})
	authc, wardenc := authv3.NewAuthorizationClient(cc), wardenv1.NewWardenServiceClient(cc)

	// The same request is allowed when well formed, after one lookup.
	good := envoytest.Request{Method: "GET", Path: "/v1/orders", Host: "api", Headers: [][2]string{{"x-api-key", newKey()}}}
	if resp, err := authc.Check(ctx, good.CheckRequest()); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("well-formed request: got (%v, %v), want allowed", resp, err)
	}
	if n := store.lookups.Load(); n != 1 {
		t.Fatalf("well-formed request: %d key lookups, want 1", n)
	}

	many := make([][2]string, 10000)
	for i := range many {
		many[i] = [2]string{fmt.Sprintf("x-h-%d", i), "v"}
	}
	for _, tc := range []struct {
		name    string
		path    string
		headers [][2]string
	}{
		{"10,000 headers", "/v1/orders", many},
		{"200 KB of headers", "/v1/orders", [][2]string{{"x-big", strings.Repeat("a", 200<<10)}}},
		{"NUL in a value", "/v1/orders", [][2]string{{"x-trace", "a\x00b"}}},
		{"CR LF in a value", "/v1/orders", [][2]string{{"x-trace", "a\r\nx-warden-subject: root"}}},
		{"LF in a name", "/v1/orders", [][2]string{{"x-a\nb", "v"}}},
		{"NUL in the credential", "/v1/orders", nil}, // the key itself gets a NUL below
		{"malformed path", "/v1/../admin/orders", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := store.lookups.Load()
			key := newKey()
			if tc.name == "NUL in the credential" {
				key += "\x00"
			}
			hs := append([][2]string{{"x-api-key", key}}, tc.headers...)
			for _, raw := range []bool{false, true} {
				req := envoytest.Request{Method: "GET", Path: tc.path, Host: "api", Headers: hs, RawHeaders: raw}
				resp, err := authc.Check(ctx, req.CheckRequest())
				if err != nil {
					t.Fatal(err)
				}
				if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 400 || codes.Code(resp.GetStatus().GetCode()) != codes.InvalidArgument {
					t.Errorf("ext_authz (raw header_map %v): got %v, want denied 400 with INVALID_ARGUMENT", raw, resp)
				}
			}
			headers := map[string]string{}
			for _, h := range hs {
				headers[h[0]] = h[1]
			}
			_, err := wardenc.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: tc.path, Headers: headers}})
			if tc.path == "/v1/orders" {
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("Check: got %v, want INVALID_ARGUMENT", err)
				}
				_, err = wardenc.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{Headers: headers}})
				if status.Code(err) != codes.InvalidArgument {
					t.Errorf("Authenticate: got %v, want INVALID_ARGUMENT", err)
				}
			}
			if n := store.lookups.Load() - before; n != 0 {
				t.Errorf("%d key lookups, want none: the request was authenticated before it was refused", n)
			}
		})
	}
}
