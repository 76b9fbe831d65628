package clients_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// recordingCheck answers every Check with resp and keeps the last request.
type recordingCheck struct {
	mu   sync.Mutex
	last *wardenv1.CheckRequest
	resp *wardenv1.CheckResponse
}

func (r *recordingCheck) check(_ context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = req
	return r.resp, nil
}

func (r *recordingCheck) request() *wardenv1.CheckRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

var identity = &wardenv1.CheckResponse{
	Allowed:                 true,
	HttpStatus:              200,
	Principal:               &wardenv1.Principal{Subject: "alice"},
	ResponseHeaders:         []*wardenv1.Header{{Name: "RateLimit", Value: `"default";r=9;t=1`}},
	UpstreamHeaders:         []*wardenv1.Header{{Name: "X-Warden-Subject", Value: "alice"}},
	UpstreamHeadersToRemove: []string{"X-Api-Key", "x-warden-tenant"},
}

func TestInterceptorRequest(t *testing.T) {
	rec := &recordingCheck{resp: identity}
	wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rec.check})))
	shop := startShop(t, wc)
	ctx := metadata.AppendToOutgoingContext(context.Background(),
		"authorization", "Bearer t", "x-api-key", "sk-test-1", "x-warden-subject", "forged",
		"x-warden-tenant", "forged", "x-other", "o", "trace-bin", "\x00")
	var hdr metadata.MD
	got, err := callShop(ctx, shop, "Echo", grpc.Header(&hdr))
	if err != nil {
		t.Fatal(err)
	}
	if want := "x-other=o;x-warden-subject=alice"; got != want {
		t.Errorf("handler's metadata: got %q, want %q", got, want)
	}
	if v := hdr.Get("ratelimit"); len(v) != 1 {
		t.Errorf("header metadata: got %v, want ratelimit", hdr)
	}
	req := rec.request()
	if h := req.GetCredentials().GetHeaders(); len(h) != 2 || h["authorization"] != "Bearer t" || h["x-api-key"] != "sk-test-1" {
		t.Errorf("credentials.headers: got %v, want authorization and x-api-key only", h)
	}
	hr := req.GetHttp()
	if req.GetGrpcMethod() != "/test.v1.Shop/Echo" || hr.GetMethod() != "POST" || hr.GetPath() != "/test.v1.Shop/Echo" || hr.GetHost() == "" {
		t.Errorf("route request: got grpc_method %q http %v, want POST /test.v1.Shop/Echo with a host", req.GetGrpcMethod(), hr)
	}
	if _, ok := hr.GetHeaders()["trace-bin"]; ok || hr.GetHeaders()["x-other"] != "o" {
		t.Errorf("http.headers: got %v, want text metadata only", hr.GetHeaders())
	}

	// Skipped methods never reach Warden.
	before := rec.request()
	shopSkip := startShop(t, wc, clients.WithSkip("/test.v1.Shop/Ping"))
	if sub, err := callShop(context.Background(), shopSkip, "Ping"); err != nil || sub != "" {
		t.Fatalf("skipped Ping: got (%q, %v), want (\"\", nil)", sub, err)
	}
	if rec.request() != before {
		t.Error("a skipped method was sent to Warden")
	}
}

func TestInterceptorDenials(t *testing.T) {
	for _, tc := range []struct {
		resp   *wardenv1.CheckResponse
		code   codes.Code
		header string
	}{
		{&wardenv1.CheckResponse{HttpStatus: 401, Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE,
			ResponseHeaders: []*wardenv1.Header{{Name: "WWW-Authenticate", Value: "Bearer"}}}, codes.Unauthenticated, "www-authenticate"},
		{&wardenv1.CheckResponse{HttpStatus: 403}, codes.PermissionDenied, ""},
		{&wardenv1.CheckResponse{HttpStatus: 404, Reason: wardenv1.DenyReason_DENY_REASON_NOT_OWNER}, codes.NotFound, ""},
		{&wardenv1.CheckResponse{HttpStatus: 429, ResponseHeaders: []*wardenv1.Header{{Name: "Retry-After", Value: "3"}}}, codes.ResourceExhausted, "retry-after"},
	} {
		rec := &recordingCheck{resp: tc.resp}
		wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rec.check})))
		shop := startShop(t, wc)
		var hdr metadata.MD
		_, err := callShop(context.Background(), shop, "Ping", grpc.Header(&hdr))
		if status.Code(err) != tc.code {
			t.Errorf("http %d: got %v, want %v", tc.resp.HttpStatus, err, tc.code)
		}
		if tc.header != "" && len(hdr.Get(tc.header)) == 0 {
			t.Errorf("http %d: header metadata %v, want %s", tc.resp.HttpStatus, hdr, tc.header)
		}
		// The stream interceptor denies before the handler runs.
		st, err := shop.NewStream(context.Background(), &shopDesc.Streams[0], "/test.v1.Shop/Watch")
		if err == nil {
			_ = st.SendMsg(nil)
			err = st.RecvMsg(new(struct{}))
		}
		if status.Code(err) != tc.code {
			t.Errorf("stream, http %d: got %v, want %v", tc.resp.HttpStatus, err, tc.code)
		}
	}
}

func TestInterceptorPeerCertificate(t *testing.T) {
	serverCert, clientCert, pool := testCerts(t)
	rec := &recordingCheck{resp: identity}
	wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rec.check})))
	srvCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool})
	addr := serveShop(t, []grpc.ServerOption{grpc.Creds(srvCreds)}, wc)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{clientCert}, RootCAs: pool, ServerName: "localhost",
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := callShop(context.Background(), conn, "Ping"); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(rec.request().GetCredentials().GetPeerCertificate()))
	if block == nil || string(block.Bytes) != string(clientCert.Certificate[0]) {
		t.Fatalf("credentials.peer_certificate: got %q, want the client's leaf as PEM", rec.request().GetCredentials().GetPeerCertificate())
	}
}

// testCerts returns a server certificate for localhost and a client certificate, both signed
// by one throwaway CA, and a pool holding that CA.
func testCerts(t *testing.T) (server, client tls.Certificate, pool *x509.CertPool) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	leaf := func(serial int64, usage x509.ExtKeyUsage, dns []string) tls.Certificate {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"}, DNSNames: dns,
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	}
	return leaf(2, x509.ExtKeyUsageServerAuth, []string{"localhost"}), leaf(3, x509.ExtKeyUsageClientAuth, nil), pool
}

func TestMiddlewareRequest(t *testing.T) {
	rec := &recordingCheck{resp: identity}
	wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rec.check})))
	var seen http.Header
	var seenBody string
	h := clients.Middleware(wc, clients.WithBody(8))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header
		b, _ := io.ReadAll(r.Body)
		seenBody = string(b)
		p, _ := clients.PrincipalFrom(r.Context())
		_, _ = io.WriteString(w, p.GetSubject())
	}))

	req := httptest.NewRequest("POST", "http://shop.example/v1/orders/a%2Fb?debug=1", strings.NewReader("12345678"))
	req.Header.Set("Authorization", "Bearer t")
	req.Header.Set("X-Api-Key", "sk-test-1")
	req.Header.Set("X-Warden-Subject", "forged")
	req.Header.Set("X-Warden-Tenant", "forged")
	req.Header.Add("Accept", "a")
	req.Header.Add("Accept", "b")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 || w.Body.String() != "alice" || w.Header().Get("RateLimit") == "" {
		t.Fatalf("got %d %q %v, want 200 alice with RateLimit", w.Code, w.Body.String(), w.Header())
	}
	if seen.Get("X-Warden-Subject") != "alice" || seen.Get("X-Api-Key") != "" || seen.Get("X-Warden-Tenant") != "" || seenBody != "12345678" {
		t.Errorf("handler saw %v body %q, want X-Warden-Subject alice, no X-Api-Key or X-Warden-Tenant, the whole body", seen, seenBody)
	}
	if req.Header.Get("X-Warden-Subject") != "forged" {
		t.Error("the caller's request headers were modified")
	}
	got := rec.request().GetHttp()
	if got.GetMethod() != "POST" || got.GetPath() != "/v1/orders/a%2Fb" || got.GetHost() != "shop.example" ||
		got.GetHeaders()["accept"] != "a,b" || got.GetHeaders()["authorization"] != "Bearer t" || string(got.GetBody()) != "12345678" {
		t.Errorf("http: got %v, want method, escaped path without query, host, lower-cased joined headers and the body", got)
	}
	if c := rec.request().GetCredentials().GetHeaders(); len(c) != 2 || c["x-api-key"] != "sk-test-1" {
		t.Errorf("credentials.headers: got %v, want authorization and x-api-key", c)
	}

	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/v1/orders", strings.NewReader("123456789")))
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the cap: got %d, want 413", w.Code)
	}
}

func TestMiddlewareDenials(t *testing.T) {
	for _, tc := range []struct {
		resp    *wardenv1.CheckResponse
		code    int
		headers []string
	}{
		{&wardenv1.CheckResponse{HttpStatus: 401, ResponseHeaders: []*wardenv1.Header{{Name: "WWW-Authenticate", Value: `Bearer error="invalid_token"`}}}, 401, []string{"WWW-Authenticate"}},
		{&wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE}, 401, []string{"WWW-Authenticate"}},
		{&wardenv1.CheckResponse{HttpStatus: 401}, 401, []string{"WWW-Authenticate"}},
		{&wardenv1.CheckResponse{HttpStatus: 403}, 403, nil},
		{&wardenv1.CheckResponse{HttpStatus: 404}, 404, nil},
		{&wardenv1.CheckResponse{HttpStatus: 429, ResponseHeaders: []*wardenv1.Header{
			{Name: "RateLimit-Policy", Value: `"default";q=10;w=1`}, {Name: "RateLimit", Value: `"default";r=0;t=1`}, {Name: "Retry-After", Value: "1"},
		}}, 429, []string{"RateLimit-Policy", "RateLimit", "Retry-After"}},
	} {
		rec := &recordingCheck{resp: tc.resp}
		wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rec.check})))
		w := httptest.NewRecorder()
		clients.Middleware(wc)(okHandler()).ServeHTTP(w, httptest.NewRequest("GET", "/v1/orders", nil))
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || w.Code != tc.code || body.Error.Code != tc.code || body.Error.Message == "" {
			t.Errorf("%v: got %d %q (%v), want %d with a JSON error", tc.resp, w.Code, w.Body.String(), err, tc.code)
		}
		for _, hn := range tc.headers {
			if w.Header().Get(hn) == "" {
				t.Errorf("%v: headers %v, want %s", tc.resp, w.Header(), hn)
			}
		}
	}
}
