package jwtauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn/jwtauth"
)

const (
	testIssuer   = "https://issuer.test/"
	testAudience = "warden"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testKeys are generated once per test binary: RSA generation is slow under -race.
type testKeys struct {
	rsa, rsa2 *rsa.PrivateKey
	rsaSmall  *rsa.PrivateKey
	ec, ec2   *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

var fixture = sync.OnceValue(func() *testKeys {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &testKeys{}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsaSmall, err = rsa.GenerateKey(rand.Reader, 1024)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.ec2, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkRSA(pub *rsa.PublicKey, kid string) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

func jwkEC(pub *ecdsa.PublicKey, kid string) map[string]any {
	b, err := pub.Bytes() // uncompressed: 0x04 || X || Y
	if err != nil {
		panic(err)
	}
	x, y := b[1:33], b[33:65]
	return map[string]any{"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(x), "y": b64(y)}
}

func jwkEd(pub ed25519.PublicKey, kid string) map[string]any {
	return map[string]any{"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(pub)}
}

func jwks(keys ...map[string]any) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// defaultJWKS publishes one key of each type: kid "rsa", "ec", "ed".
func defaultJWKS(k *testKeys) []byte {
	return jwks(jwkRSA(&k.rsa.PublicKey, "rsa"), jwkEC(&k.ec.PublicKey, "ec"),
		jwkEd(k.ed.Public().(ed25519.PublicKey), "ed"))
}

// algCase is one algorithm with the default JWKS key that verifies it.
type algCase struct {
	alg, kid string
	key      crypto.Signer
}

func eachAlgorithm(k *testKeys) []algCase {
	return []algCase{{"RS256", "rsa", k.rsa}, {"PS256", "rsa", k.rsa}, {"ES256", "ec", k.ec}, {"EdDSA", "ed", k.ed}}
}

// signRaw signs header and claims JSON given verbatim, with alg's scheme and key.
func signRaw(t testing.TB, alg string, key crypto.Signer, header, claims string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(claims))
	return input + "." + b64(signature(t, alg, key, input))
}

func signature(t testing.TB, alg string, key crypto.Signer, input string) []byte {
	t.Helper()
	digest := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg {
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, digest[:],
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, key.(*ecdsa.PrivateKey), digest[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	default:
		t.Fatalf("signature: alg %q not in the test signer", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// sign marshals header and claims and signs them.
func sign(t testing.TB, alg string, key crypto.Signer, header, claims map[string]any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	c, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signRaw(t, alg, key, string(h), string(c))
}

// claimsAt returns valid claims for an instant: issued at now, expiring an hour later.
func claimsAt(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "user-1", "jti": "jti-1",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwksServer serves a replaceable JWK Set and counts requests.
type jwksServer struct {
	*httptest.Server
	hits   atomic.Int64
	body   atomic.Pointer[[]byte]
	status atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	s := &jwksServer{}
	s.set(body)
	s.status.Store(http.StatusOK)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(int(s.status.Load()))
		_, _ = w.Write(*s.body.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) { s.body.Store(&body) }

// env is a Verifier on a JWKS server with the default keys, loaded, on a settable clock.
type env struct {
	v     *jwtauth.Verifier
	srv   *jwksServer
	clock *clock
	keys  *testKeys
}

func newEnv(t testing.TB, edit func(*jwtauth.Config)) *env {
	t.Helper()
	k := fixture()
	e := &env{srv: newJWKSServer(t, defaultJWKS(k)), clock: newClock(), keys: k}
	cfg := jwtauth.Config{
		Issuers: []jwtauth.IssuerConfig{{
			Issuer:    testIssuer,
			Audiences: []string{testAudience, "other-service"},
			JWKSURL:   e.srv.URL + "/jwks.json",
		}},
		Now: e.clock.Now,
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := jwtauth.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	e.v = v
	return e
}
