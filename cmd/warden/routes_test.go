package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// TestRoutesPlainScopesAndPrefixes runs Warden with JWTs from an outside issuer that carry
// plain OAuth 2.0 scopes (`scope: "read write"`), routes that require them by name, prefix
// routes and HEAD requests, and asks through ext_authz as Envoy does and through Check.
func TestRoutesPlainScopesAndPrefixes(t *testing.T) {
	dir := t.TempDir()
	issuer, jwksPath := newIssuer(t, dir)
	cfg := `authn:
  jwt:
    issuers:
      - issuer: https://issuer.test
        audiences: [warden]
        jwks_file: ` + jwksPath + `
        claims: {roles: roles}
authz:
  roles:
    reader: {permissions: ["users:read"]}
  routes:
    - name: docs_read
      method: GET
      path: /docs/{id}
      scopes: {any_of: [read]}
    - name: docs_write
      method: POST
      prefix: /docs/
      scopes: {all_of: [read, write]}
    - name: api
      method: GET
      prefix: /api/
      scopes: {any_of: [read, admin]}
    - name: api_user
      method: GET
      path: /api/users/{id}
      action: users:read
    - name: status
      method: GET
      prefix: /status
      public: true
`
	p := filepath.Join(dir, "warden.yaml")
	writeFile(t, p, []byte(cfg))
	r := start(t, nil, "-config", p)
	cc := dial(t, r.GRPC)
	c := authv3.NewAuthorizationClient(cc)
	token := func(scope string, roles ...string) [][2]string {
		now := time.Now()
		claims := map[string]any{"iss": "https://issuer.test", "aud": "warden", "sub": "svc", "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
		if scope != "" {
			claims["scope"] = scope
		}
		if roles != nil {
			claims["roles"] = roles
		}
		return [][2]string{{"authorization", "Bearer " + issuer.token(t, claims)}}
	}
	readWrite, upperRead, read := token("read write"), token("Read"), token("read")

	tests := []struct {
		name         string
		method, path string
		headers      [][2]string
		want         int // 200 = allowed
	}{
		{"plain scope: read write holds read", "GET", "/docs/d-1", readWrite, 200},
		{"plain scope: Read is not read", "GET", "/docs/d-1", upperRead, 403},
		{"plain scope: no scope claim", "GET", "/docs/d-1", token(""), 403},
		{"plain scopes, all of, on a prefix route", "POST", "/docs/d-1/comments", readWrite, 200},
		{"plain scopes, all of, one missing", "POST", "/docs/d-1", read, 403},
		{"prefix: a bare /api/", "GET", "/api/", read, 200},
		{"prefix: /api itself", "GET", "/api", read, 200},
		{"prefix: deeper", "GET", "/api/v2/things/t-1?x=1", read, 200},
		{"prefix: whole segments only", "GET", "/apikeys", read, 404},
		{"a template beats the prefix: its role is required", "GET", "/api/users/u-1", read, 403},
		{"a template beats the prefix: with the role", "GET", "/api/users/u-1", token("", "reader"), 200},
		{"HEAD follows GET", "HEAD", "/docs/d-1", read, 200},
		{"HEAD follows GET, scopes still checked", "HEAD", "/docs/d-1", upperRead, 403},
		{"HEAD follows GET on a public prefix", "HEAD", "/status/live", nil, 200},
		{"HEAD follows GET, not POST", "HEAD", "/docs/d-1/comments", readWrite, 404}, // /docs/ is a POST prefix
		{"malformed path", "GET", "/docs/../admin", readWrite, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := envoytest.Request{Method: tt.method, Path: tt.path, Host: "api", Headers: tt.headers}
			resp := extAuthz(t, c, req)
			if tt.want == 200 {
				subject := "svc"
				if tt.headers == nil {
					subject = "" // a public route: no identity upstream
				}
				wantAllowed(t, req, resp, map[string]string{"x-warden-subject": subject})
				return
			}
			if d := resp.GetDeniedResponse(); d == nil || int(d.GetStatus().GetCode()) != tt.want {
				t.Fatalf("%s %s: got %v, want denied %d", tt.method, tt.path, resp, tt.want)
			}
			if tt.want == 400 && resp.GetStatus().GetCode() != int32(codes.InvalidArgument) {
				t.Errorf("%s %s: gRPC status %v, want INVALID_ARGUMENT with 400", tt.method, tt.path, resp.GetStatus())
			}
		})
	}

	// The same decisions through Warden's own Check.
	wc := wardenv1.NewWardenServiceClient(cc)
	for _, tt := range []struct {
		method, path string
		headers      [][2]string
		want         int32
	}{
		{"GET", "/docs/d-1", readWrite, 200},
		{"GET", "/docs/d-1", upperRead, 403},
		{"HEAD", "/api/x", read, 200},
	} {
		h := map[string]string{}
		for _, kv := range tt.headers {
			h[kv[0]] = kv[1]
		}
		resp, err := wc.Check(context.Background(), &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: tt.method, Path: tt.path, Headers: h}})
		if err != nil || resp.GetHttpStatus() != tt.want {
			t.Errorf("Check %s %s: got %v, %v; want HTTP %d", tt.method, tt.path, resp, err, tt.want)
		}
	}
}

func TestRoutesConfigErrors(t *testing.T) {
	dir := t.TempDir()
	head := "authz:\n  routes:\n"
	tests := []struct{ routes, want string }{
		{"    - {name: a, method: GET, prefix: /api/, public: true}\n    - {name: b, method: GET, prefix: /api, public: true}\n",
			":4: authz.routes[1].prefix: GET /api/ (prefix) has the same shape as authz.routes[0]"},
		{"    - {name: a, method: GET, prefix: \"/api/{x}/\", public: true}\n", ":3: authz.routes[0].prefix: prefix"},
		{"    - {name: a, method: GET, path: /a, scopes: {any_of: [\"a b\"]}}\n", ":3: authz.routes[0].scopes.any_of[0]:"},
		{"    - {name: a, method: GET, path: /a, scopes: {one_of: [a]}}\n", "one_of"},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, "w.yaml")
		writeFile(t, p, []byte(head+tt.routes))
		err := run(context.Background(), []string{"-config", p, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "off"}, nil, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("routes %q: got %v, want an error containing %q", tt.routes, err, tt.want)
		}
	}
}
