package authn

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/fielderr"
)

// fakeVerifier is a TokenVerifier that accepts one token.
type fakeVerifier struct {
	token  string
	method Method
}

func (f fakeVerifier) Verify(_ context.Context, tok string) (Principal, Reason) {
	if tok != f.token {
		return Principal{}, BadSignature
	}
	return Principal{Subject: f.method.String() + "-user", Method: f.method}, OK
}

func TestAuthenticator(t *testing.T) {
	ctx := context.Background()
	keys := newTestAPIKeys(t, &MemoryKeyStore{}, &clock{t0})
	key, _, _ := keys.Create(ctx, KeySpec{Owner: "key-user"})
	ca := newCA(t, "ca")
	leaf, _ := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example/svc"}})
	m, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/*"}, GatewayRoots: ca.pool,
		TrustGatewayPrincipal: true, Now: func() time.Time { return t0 }})
	jwt := fakeVerifier{testJWT, MethodJWT}
	opaque := fakeVerifier{"opaque-token", MethodOAuth2}
	all := Config{APIKeys: keys, JWT: jwt, OAuth2: opaque, MTLS: m}
	chain := []*x509.Certificate{leaf}
	hdr := headers
	tests := []struct {
		name    string
		cfg     Config
		c       Credentials
		subject string
		want    Reason
	}{
		{"nothing", all, Credentials{}, "", NoCredentials},
		{"typed api key", all, Credentials{APIKey: key}, "key-user", OK},
		{"api key header", all, Credentials{Headers: hdr("x-api-key", key)}, "key-user", OK},
		{"bearer api key", all, Credentials{Headers: hdr("authorization", "Bearer "+key)}, "key-user", OK},
		{"bearer jwt", all, Credentials{Headers: hdr("authorization", "Bearer "+testJWT)}, "jwt-user", OK},
		{"typed jwt", all, Credentials{BearerToken: testJWT}, "jwt-user", OK},
		{"bearer opaque", all, Credentials{Headers: hdr("authorization", "Bearer opaque-token")}, "oauth2-user", OK},
		{"jwt without JWT verifier goes to introspection", Config{OAuth2: fakeVerifier{testJWT, MethodOAuth2}}, Credentials{BearerToken: testJWT}, "oauth2-user", OK},
		{"typed and header agree", all, Credentials{APIKey: key, Headers: hdr("x-api-key", key)}, "key-user", OK},
		{"typed and header differ", all, Credentials{BearerToken: testJWT, Headers: hdr("x-api-key", key)}, "", Malformed},
		{"typed key and token", all, Credentials{APIKey: key, BearerToken: testJWT}, "", Malformed},
		{"malformed header", all, Credentials{Headers: hdr("authorization", "Basic abc")}, "", Malformed},
		{"bad jwt", all, Credentials{BearerToken: testJWT + "x"}, "", BadSignature},
		{"peer chain", all, Credentials{PeerCertificates: chain}, "spiffe://prod.example/svc", OK},
		{"peer pem", all, Credentials{PeerCertificatePEM: encodePEM(leaf)}, "spiffe://prod.example/svc", OK},
		{"gateway principal", all, Credentials{PeerPrincipal: "spiffe://prod.example/gw"}, "spiffe://prod.example/gw", OK},
		{"chain before principal", all, Credentials{PeerCertificates: chain, PeerPrincipal: "spiffe://prod.example/gw"}, "spiffe://prod.example/svc", OK},
		{"bearer wins over peer", all, Credentials{APIKey: key, PeerCertificates: chain}, "key-user", OK},
		{"peer wins when preferred", Config{APIKeys: keys, MTLS: m, PreferPeer: true}, Credentials{APIKey: key, PeerCertificates: chain}, "spiffe://prod.example/svc", OK},
		{"failed bearer does not fall back to peer", all, Credentials{BearerToken: testJWT + "x", PeerCertificates: chain}, "", BadSignature},
		{"disabled kind ignored for peer", Config{MTLS: m}, Credentials{APIKey: key, PeerCertificates: chain}, "spiffe://prod.example/svc", OK},
		{"only a disabled kind", Config{MTLS: m}, Credentials{APIKey: key}, "", Malformed},
		{"opaque without introspection", Config{APIKeys: keys, JWT: jwt}, Credentials{BearerToken: "opaque-token"}, "", Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAuthenticator(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			p, r := a.Authenticate(ctx, &tt.c)
			if r != tt.want || p.Subject != tt.subject {
				t.Errorf("Authenticate = %q %v, want %q %v", p.Subject, r, tt.subject, tt.want)
			}
		})
	}
	if _, err := NewAuthenticator(Config{}); err == nil {
		t.Errorf("NewAuthenticator(no methods) error = nil")
	}
}

func TestAuthenticatorAPIKeyFromHeadersAllocs(t *testing.T) {
	ctx := context.Background()
	keys := newTestAPIKeys(t, &MemoryKeyStore{}, &clock{t0})
	key, _, _ := keys.Create(ctx, KeySpec{Owner: "alice"})
	a, _ := NewAuthenticator(Config{APIKeys: keys})
	c := &Credentials{Headers: map[string][]string{"authorization": {"ApiKey " + key}}}
	a.Authenticate(ctx, c)
	if n := testing.AllocsPerRun(1000, func() { a.Authenticate(ctx, c) }); n != 0 {
		t.Errorf("Authenticate(API key in headers, cached) allocs = %v, want 0", n)
	}
}

func BenchmarkAuthenticatorAPIKeyHeader(b *testing.B) {
	ctx := context.Background()
	keys := newTestAPIKeys(b, &MemoryKeyStore{}, &clock{t0})
	key, _, _ := keys.Create(ctx, KeySpec{Owner: "alice"})
	a, _ := NewAuthenticator(Config{APIKeys: keys})
	c := &Credentials{Headers: map[string][]string{"authorization": {"Bearer " + key}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, r := a.Authenticate(ctx, c); r != OK {
			b.Fatal(r)
		}
	}
}

func TestStaticKeyRecords(t *testing.T) {
	pepper := testPepper(t)
	key := formatAPIKey(livePrefix, testID, testSecret)
	_, d, err := pepper.DigestAPIKey(key)
	if err != nil {
		t.Fatal(err)
	}
	good := StaticKey{ID: testID, Env: "live", Digest: hex.EncodeToString(d[:]), Owner: "svc-a",
		Roles: []string{"reader"}, ExpiresAt: t0.Add(time.Hour)}
	recs, err := StaticKeyRecords("authn.api_keys", []StaticKey{good})
	if err != nil {
		t.Fatal(err)
	}
	want := []KeyRecord{{ID: testID, Env: EnvLive, Digest: d, Owner: "svc-a", Roles: []string{"reader"}, ExpiresAt: t0.Add(time.Hour)}}
	if diff := cmp.Diff(recs, want); diff != "" {
		t.Errorf("records (-got +want):\n%s", diff)
	}
	// The record authenticates the key it was made from.
	store := &MemoryKeyStore{}
	_ = store.Put(context.Background(), recs[0])
	a := newTestAPIKeys(t, store, &clock{t0})
	if p, r := a.Authenticate(context.Background(), key); r != OK || p.Subject != "svc-a" {
		t.Errorf("static key: %v %q, want OK svc-a", r, p.Subject)
	}

	_, err = StaticKeyRecords("authn.api_keys", []StaticKey{good, good, {ID: "short", Env: "prod", Digest: "zz"}})
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *fielderr.Error
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *fielderr.Error", e)
		}
		paths = append(paths, fe.Path)
	}
	wantPaths := []string{"authn.api_keys[1].id", "authn.api_keys[2].id", "authn.api_keys[2].env",
		"authn.api_keys[2].digest", "authn.api_keys[2].owner"}
	if diff := cmp.Diff(paths, wantPaths); diff != "" {
		t.Errorf("error paths (-got +want):\n%s", diff)
	}
	if strings.Contains(err.Error(), good.Digest) {
		t.Errorf("error text contains a digest")
	}
}
