package jwtauth_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
)

// A token verified and cached is refused once the key that verified it leaves the set: the
// next refresh withdraws it (issue 21 item 1). Tokens of the keys that stay keep their cache
// entries, and a key that comes back verifies again.
func TestWithdrawnKeyDropsCachedTokens(t *testing.T) {
	e := newEnv(t, nil)
	k := e.keys
	rsaTok := sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa"}, claimsAt(t0))
	ecTok := sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "ec"}, with(claimsAt(t0), "jti", "ec"))
	for _, tok := range []string{rsaTok, ecTok, rsaTok, ecTok} { // the second round is cached
		if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
			t.Fatalf("before the removal: got %v, want ok", got)
		}
	}
	// The compromised RSA key is withdrawn; the other keys are published unchanged.
	e.srv.set(jwks(jwkEC(&k.ec.PublicKey, "ec"), jwkEd(k.ed.Public().(ed25519.PublicKey), "ed")))
	if err := e.v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, got := e.v.Verify(context.Background(), rsaTok); got != authn.Unknown {
		t.Errorf("token of the withdrawn key: got %v, want %v", got, authn.Unknown)
	}
	if _, got := e.v.Verify(context.Background(), ecTok); got != authn.OK {
		t.Errorf("token of a key that stayed: got %v, want ok", got)
	}
	// The ES256 token is still a cache hit: no allocation (a verification allocates).
	if allocs := testing.AllocsPerRun(20, func() { e.v.Verify(context.Background(), ecTok) }); allocs != 0 {
		t.Errorf("token of a key that stayed: %v allocations, want 0 (a cache hit)", allocs)
	}
	// A kid reused for other key material withdraws the old key too.
	e.srv.set(jwks(jwkEC(&k.ec2.PublicKey, "ec"), jwkRSA(&k.rsa.PublicKey, "rsa")))
	if err := e.v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, got := e.v.Verify(context.Background(), ecTok); got != authn.BadSignature {
		t.Errorf("token of a replaced kid: got %v, want %v", got, authn.BadSignature)
	}
	if _, got := e.v.Verify(context.Background(), rsaTok); got != authn.OK {
		t.Errorf("token of a key that came back: got %v, want ok", got)
	}
}

// redirector answers every request with a redirect to target.
func redirector(t *testing.T, target string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A JWKS URL that redirects to another host's key set does not replace the trusted keys
// (issue 21 item 2): redirects are refused by default, and AllowSameHostRedirects follows
// only redirects to the same scheme and host. Each refusal is counted.
func TestJWKSRedirects(t *testing.T) {
	k := fixture()
	evil := newJWKSServer(t, jwks(jwkEd(k.ed.Public().(ed25519.PublicKey), "evil")))
	evilTok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "evil"}, claimsAt(t0))
	for _, sameHost := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "same host allowed"}[sameHost], func(t *testing.T) {
			var redirect atomic.Pointer[string]
			mux := http.NewServeMux()
			mux.HandleFunc("/good.json", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwks(jwkEC(&k.ec.PublicKey, "good"))) })
			mux.HandleFunc("/jwks.json", func(w http.ResponseWriter, r *http.Request) {
				if to := redirect.Load(); to != nil {
					http.Redirect(w, r, *to, http.StatusFound)
					return
				}
				_, _ = w.Write(jwks(jwkEC(&k.ec.PublicKey, "good")))
			})
			issuer := httptest.NewServer(mux)
			t.Cleanup(issuer.Close)
			v, err := jwtauth.New(jwtauth.Config{
				Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience},
					JWKSURL: issuer.URL + "/jwks.json", AllowSameHostRedirects: sameHost}},
				UnknownKIDWait: -1,
				Now:            newClock().Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			goodTok := sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "good"}, claimsAt(t0))
			for _, to := range []string{evil.URL + "/jwks.json", redirector(t, evil.URL+"/jwks.json").URL} {
				redirect.Store(&to)
				_, before := v.JWKSStats()
				if err := v.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "refused") {
					t.Errorf("redirect to %s: got %v, want a refused redirect", to, err)
				}
				if _, after := v.JWKSStats(); after != before+1 {
					t.Errorf("refusals: got %d, want %d", after, before+1)
				}
				if _, got := v.Verify(context.Background(), evilTok); got == authn.OK {
					t.Fatalf("the redirect target's key was trusted")
				}
				if _, got := v.Verify(context.Background(), goodTok); got != authn.OK {
					t.Errorf("the last good set: got %v, want ok", got)
				}
			}
			same := issuer.URL + "/good.json"
			redirect.Store(&same)
			err = v.Refresh(context.Background())
			if sameHost && err != nil {
				t.Errorf("same-host redirect allowed: %v", err)
			}
			if !sameHost && err == nil {
				t.Errorf("same-host redirect by default: got nil error, want a refusal")
			}
		})
	}
}

// A fetched set replaces the last good one only if it parses, passes key validation and is
// not empty; every refusal is counted.
func TestRefusedSetKeepsLastGoodSet(t *testing.T) {
	e := newEnv(t, nil)
	k := e.keys
	tok := sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "ec"}, claimsAt(t0))
	small := jwkRSA(&k.rsaSmall.PublicKey, "small")
	enc := jwkEC(&k.ec2.PublicKey, "enc")
	enc["use"] = "enc"
	for name, body := range map[string][]byte{
		"empty":                  []byte(`{"keys":[]}`),
		"RSA-1024 beside":        jwks(jwkEC(&k.ec.PublicKey, "ec"), small),
		"enc key beside":         jwks(jwkEC(&k.ec.PublicKey, "ec"), enc),
		"oct beside":             jwks(jwkEC(&k.ec.PublicKey, "ec"), map[string]any{"kty": "oct", "k": "c2VjcmV0"}),
		"only new keys, one bad": jwks(jwkRSA(&k.rsa2.PublicKey, "new"), small),
	} {
		t.Run(name, func(t *testing.T) {
			e.srv.set(body)
			_, before := e.v.JWKSStats()
			if err := e.v.Refresh(context.Background()); err == nil {
				t.Fatal("Refresh: got nil error, want a refused set")
			}
			if _, after := e.v.JWKSStats(); after != before+1 {
				t.Errorf("refusals: got %d, want %d", after, before+1)
			}
			if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
				t.Errorf("token of the last good set: got %v, want ok", got)
			}
		})
	}
}

// Load refuses a JWKS file holding an unacceptable key, naming its line; it tolerates an
// unreachable URL, keeping the set carried over from the Verifier it replaces (issue 16
// item 2).
func TestLoad(t *testing.T) {
	k := fixture()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	small := jwkRSA(&k.rsaSmall.PublicKey, "small")
	body := strings.Replace(string(jwks(jwkEC(&k.ec.PublicKey, "ec"), small)), `},{`, "},\n{", 1)
	if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(jwtauth.Config{Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: bad}}})
	if err != nil {
		t.Fatal(err)
	}
	err = v.Load(context.Background())
	var je *jwtauth.JWKSError
	if !errors.As(err, &je) || je.Source != bad || je.Line != 2 || je.KID != "small" || !strings.Contains(err.Error(), bad+":2: key 1") {
		t.Fatalf("Load of an RSA-1024 set: got %v, want %s:2: key 1 (kid \"small\")", err, bad)
	}
	// The same set with DropUnacceptableKeys loads, without the small key.
	v, err = jwtauth.New(jwtauth.Config{Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience},
		JWKSFile: bad, DropUnacceptableKeys: true}}, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Load(context.Background()); err != nil {
		t.Fatalf("Load with DropUnacceptableKeys: %v", err)
	}
	if _, got := v.Verify(context.Background(), sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "ec"}, claimsAt(t0))); got != authn.OK {
		t.Errorf("good key of a set with a dropped key: got %v, want ok", got)
	}

	// A URL: the first Verifier loads; its replacement finds the server down and keeps the set.
	srv := newJWKSServer(t, jwks(jwkEC(&k.ec.PublicKey, "ec")))
	cfg := jwtauth.Config{Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}},
		Now: newClock().Now, UnknownKIDWait: -1}
	first, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.status.Store(http.StatusServiceUnavailable)
	cfg.Previous = first
	second, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Load(context.Background()); err != nil {
		t.Errorf("Load with the JWKS server down: got %v, want nil (the server may come back)", err)
	}
	tok := sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "ec"}, claimsAt(t0))
	if _, got := second.Verify(context.Background(), tok); got != authn.OK {
		t.Errorf("after a reload with the server down: got %v, want ok (the last good set)", got)
	}
	// A URL serving an unacceptable set is an error.
	srv.status.Store(http.StatusOK)
	srv.set(jwks(jwkEC(&k.ec.PublicKey, "ec"), small))
	third, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := third.Load(context.Background()); !errors.As(err, &je) || je.Source != srv.URL {
		t.Errorf("Load of a URL serving an RSA-1024 key: got %v, want a *JWKSError for %s", err, srv.URL)
	}
}
