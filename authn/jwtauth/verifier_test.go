package jwtauth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
)

func TestVerifyEachAlgorithm(t *testing.T) {
	e := newEnv(t, nil)
	k := e.keys
	for _, tc := range eachAlgorithm(k) {
		t.Run(tc.alg, func(t *testing.T) {
			tok := sign(t, tc.alg, tc.key, map[string]any{"alg": tc.alg, "kid": tc.kid, "typ": "JWT"},
				with(claimsAt(t0), "jti", "id-"+tc.alg))
			got, reason := e.v.Verify(context.Background(), tok)
			if reason != authn.OK {
				t.Fatalf("Verify: reason %v, want ok", reason)
			}
			want := authn.Principal{Subject: "user-1", Method: authn.MethodJWT, CredentialID: "id-" + tc.alg,
				ExpiresAt: t0.Add(time.Hour)}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("principal (-got +want):\n%s", diff)
			}
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	e := newEnv(t, nil)
	k := e.keys
	rsaHeader := map[string]any{"alg": "RS256", "kid": "rsa"}
	valid := claimsAt(t0)
	good := sign(t, "RS256", k.rsa, rsaHeader, valid)
	goodParts := strings.Split(good, ".")

	// RS/HS confusion: HMAC keyed with the RSA public key as a verifier might load it.
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsInput := b64([]byte(`{"alg":"HS256","kid":"rsa"}`)) + "." + goodParts[1]
	mac := hmac.New(sha256.New, pemKey)
	mac.Write([]byte(hsInput))
	hsToken := hsInput + "." + b64(mac.Sum(nil))

	esInput := b64([]byte(`{"alg":"ES256","kid":"ec"}`)) + "." + goodParts[1]
	digest := sha256.Sum256([]byte(esInput))
	derSig, err := ecdsa.SignASN1(rand.Reader, k.ec, digest[:])
	if err != nil {
		t.Fatal(err)
	}

	attacker, err := ecdsa.GenerateKey(k.ec.Curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	stdAlphabet := strings.NewReplacer("-", "+", "_", "/").Replace(goodParts[2])
	if stdAlphabet == goodParts[2] {
		t.Fatalf("test signature has no URL-alphabet character to replace")
	}
	big := strings.Repeat("x", 9000)

	for _, tc := range []struct {
		name  string
		token string
		want  authn.Reason
	}{
		{"valid", good, authn.OK},
		{"empty", "", authn.NoCredentials},
		{"alg none empty sig", b64([]byte(`{"alg":"none"}`)) + "." + goodParts[1] + ".", authn.Malformed},
		{"alg none", b64([]byte(`{"alg":"none","kid":"rsa"}`)) + "." + goodParts[1] + "." + goodParts[2], authn.UnsupportedAlgorithm},
		{"alg None", b64([]byte(`{"alg":"None","kid":"rsa"}`)) + "." + goodParts[1] + "." + goodParts[2], authn.UnsupportedAlgorithm},
		{"alg NONE", b64([]byte(`{"alg":"NONE","kid":"rsa"}`)) + "." + goodParts[1] + "." + goodParts[2], authn.UnsupportedAlgorithm},
		{"alg nOnE", b64([]byte(`{"alg":"nOnE","kid":"rsa"}`)) + "." + goodParts[1] + "." + goodParts[2], authn.UnsupportedAlgorithm},
		{"alg rs256 lower case", sign(t, "RS256", k.rsa, map[string]any{"alg": "rs256", "kid": "rsa"}, valid), authn.UnsupportedAlgorithm},
		{"HS256 keyed with RSA public key", hsToken, authn.UnsupportedAlgorithm},
		{"ES256 r=s=0", esInput + "." + b64(make([]byte, 64)), authn.BadSignature},
		{"ES256 DER signature", esInput + "." + b64(derSig), authn.BadSignature},
		{"ES256 header on RSA key", sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": "rsa"}, valid), authn.UnsupportedAlgorithm},
		{"RS256 header on EC key", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "ec"}, valid), authn.UnsupportedAlgorithm},
		{"EdDSA header on RSA key", sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "rsa"}, valid), authn.UnsupportedAlgorithm},
		{"PS256 header, RS256 signature", b64([]byte(`{"alg":"PS256","kid":"rsa"}`)) + "." + goodParts[1] + "." + goodParts[2], authn.BadSignature},
		{"RS384", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS384", "kid": "rsa"}, valid), authn.UnsupportedAlgorithm},
		{"tampered claims", goodParts[0] + "." + b64([]byte(`{"iss":"`+testIssuer+`","aud":"warden","sub":"admin","exp":9999999999}`)) + "." + goodParts[2], authn.BadSignature},
		{"embedded jwk", sign(t, "ES256", attacker, map[string]any{"alg": "ES256", "jwk": jwkEC(&attacker.PublicKey, "x")}, valid), authn.Malformed},
		{"crit", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa", "crit": []string{"exp"}, "exp": 1}, valid), authn.Malformed},
		{"b64 false", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa", "b64": false}, valid), authn.Malformed},
		{"x5c ignored", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa", "x5c": []string{"MIIB"}}, valid), authn.OK},
		{"ALG member is not alg", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa","ALG":"none"}`, mustJSON(valid)), authn.OK},
		{"kid path traversal", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "../../../etc/passwd"}, valid), authn.Unknown},
		{"kid relative", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "./rsa"}, valid), authn.Unknown},
		{"kid SQL", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa' OR '1'='1"}, valid), authn.Unknown},
		{"kid NUL", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa\x00"}, valid), authn.Unknown},
		{"kid case", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "RSA"}, valid), authn.Unknown},
		{"kid URL", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "http://127.0.0.1/x"}, valid), authn.Unknown},
		{"kid number", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": 1}, valid), authn.Malformed},
		{"no kid, one key per alg", sign(t, "ES256", k.ec, map[string]any{"alg": "ES256"}, valid), authn.OK},
		{"expired beyond leeway", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "exp", t0.Add(-31*time.Second).Unix())), authn.Expired},
		{"expired within leeway", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "exp", t0.Add(-29*time.Second).Unix())), authn.OK},
		{"exp missing", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "exp", nil)), authn.Malformed},
		{"exp string", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "exp", "9999999999")), authn.Malformed},
		{"exp fractional", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "exp", float64(t0.Unix())+3600.5)), authn.OK},
		{"nbf beyond leeway", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "nbf", t0.Add(31*time.Second).Unix())), authn.NotYetValid},
		{"nbf within leeway", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "nbf", t0.Add(29*time.Second).Unix())), authn.OK},
		{"iat in the future", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "iat", t0.Add(time.Minute).Unix())), authn.NotYetValid},
		{"aud array", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", []string{"x", testAudience})), authn.OK},
		{"aud other configured", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", "other-service")), authn.OK},
		{"aud wrong", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", "billing")), authn.WrongAudience},
		{"aud array wrong", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", []string{"a", "b"})), authn.WrongAudience},
		{"aud empty array", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", []string{})), authn.WrongAudience},
		{"aud missing", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "aud", nil)), authn.WrongAudience},
		{"iss wrong", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "iss", "https://evil.test/")), authn.WrongIssuer},
		{"iss missing", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "iss", nil)), authn.WrongIssuer},
		{"iss trailing slash differs", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "iss", "https://issuer.test")), authn.WrongIssuer},
		{"sub missing", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "sub", nil)), authn.Malformed},
		{"duplicate alg", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa","alg":"RS256"}`, mustJSON(valid)), authn.Malformed},
		{"duplicate escaped alg", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa","al\u0067":"none"}`, mustJSON(valid)), authn.Malformed},
		{"duplicate sub", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa"}`, strings.TrimSuffix(mustJSON(valid), "}")+`,"sub":"admin"}`), authn.Malformed},
		{"duplicate nested", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa"}`, strings.TrimSuffix(mustJSON(valid), "}")+`,"x":{"a":1,"a":2}}`), authn.Malformed},
		{"trailing data in claims", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa"}`, mustJSON(valid)+`{}`), authn.Malformed},
		{"invalid UTF-8 in claims", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa"}`, strings.TrimSuffix(mustJSON(valid), "}")+`,"n":"\xff"}`), authn.Malformed},
		{"claims not an object", signRaw(t, "RS256", k.rsa, `{"alg":"RS256","kid":"rsa"}`, `["sub"]`), authn.Malformed},
		{"padding", goodParts[0] + "." + goodParts[1] + "." + goodParts[2] + strings.Repeat("=", (4-len(goodParts[2])%4)%4+4*boolInt(len(goodParts[2])%4 == 0)), authn.Malformed},
		{"standard alphabet", goodParts[0] + "." + goodParts[1] + "." + stdAlphabet, authn.Malformed},
		{"trailing bits", goodParts[0] + "." + goodParts[1] + "." + setTrailingBit(t, goodParts[2]), authn.Malformed},
		{"newline", goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:10] + "\n" + goodParts[2][10:], authn.Malformed},
		{"space", " " + good, authn.Malformed},
		{"two segments", goodParts[0] + "." + goodParts[1], authn.Malformed},
		{"four segments", good + "." + goodParts[2], authn.Malformed},
		{"JWE", goodParts[0] + "." + goodParts[1] + "." + goodParts[2] + ".a.b", authn.Malformed},
		{"oversize", sign(t, "RS256", k.rsa, rsaHeader, with(valid, "pad", big)), authn.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := e.v.Verify(context.Background(), tc.token)
			if got != tc.want {
				t.Errorf("Verify: got %v, want %v", got, tc.want)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func mustJSON(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// setTrailingBit changes the last character of an unpadded base64url segment so that a bit
// beyond the data is set; the segment must not be a multiple of 4 long.
func setTrailingBit(t *testing.T, seg string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	if len(seg)%4 == 0 {
		t.Fatalf("segment length %d has no trailing bits", len(seg))
	}
	i := strings.IndexByte(alphabet, seg[len(seg)-1])
	out := seg[:len(seg)-1] + string(alphabet[i|1])
	if _, err := base64.RawURLEncoding.DecodeString(out); err != nil {
		t.Fatalf("lenient decoding of the altered segment failed: %v", err)
	}
	if out == seg {
		out = seg[:len(seg)-1] + string(alphabet[i^1])
	}
	return out
}

func TestTyp(t *testing.T) {
	e := newEnv(t, func(c *jwtauth.Config) { c.Issuers[0].Types = []string{"at+jwt"} })
	for _, tc := range []struct {
		typ  any
		want authn.Reason
	}{
		{"at+jwt", authn.OK},
		{"AT+JWT", authn.OK},
		{"application/at+jwt", authn.OK},
		{"JWT", authn.Malformed},
		{nil, authn.Malformed},
	} {
		t.Run(fmt.Sprint(tc.typ), func(t *testing.T) {
			h := map[string]any{"alg": "EdDSA", "kid": "ed"}
			if tc.typ != nil {
				h["typ"] = tc.typ
			}
			_, got := e.v.Verify(context.Background(), sign(t, "EdDSA", e.keys.ed, h, claimsAt(t0)))
			if got != tc.want {
				t.Errorf("typ %v: got %v, want %v", tc.typ, got, tc.want)
			}
		})
	}
}

func TestKeyLocatingHeadersNeverFollowed(t *testing.T) {
	e := newEnv(t, nil)
	var hits atomic.Int64
	trap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write(defaultJWKS(e.keys))
	}))
	t.Cleanup(trap.Close)
	attacker, err := ecdsa.GenerateKey(e.keys.ec.Curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header map[string]any
	}{
		{"jku", map[string]any{"alg": "ES256", "kid": "evil", "jku": trap.URL + "/jwks"}},
		{"x5u", map[string]any{"alg": "ES256", "kid": "evil", "x5u": trap.URL + "/cert.pem"}},
		{"jku with known kid", map[string]any{"alg": "ES256", "kid": "ec", "jku": trap.URL + "/jwks"}},
		{"jwk", map[string]any{"alg": "ES256", "jwk": jwkEC(&attacker.PublicKey, "evil")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got := e.v.Verify(context.Background(), sign(t, "ES256", attacker, tc.header, claimsAt(t0)))
			if got != authn.Malformed {
				t.Errorf("got %v, want %v", got, authn.Malformed)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("jku/x5u server contacted %d times, want 0", n)
	}
}

func TestUnknownKIDFloodIsBounded(t *testing.T) {
	e := newEnv(t, func(c *jwtauth.Config) { c.UnknownKIDWait = 5 * time.Second })
	flood := func() {
		for i := 0; i < 200; i++ {
			kid := make([]byte, 12)
			_, _ = rand.Read(kid)
			tok := sign(t, "EdDSA", e.keys.ed, map[string]any{"alg": "EdDSA", "kid": b64(kid)}, claimsAt(t0))
			if _, got := e.v.Verify(context.Background(), tok); got != authn.Unknown {
				t.Fatalf("random kid: got %v, want %v", got, authn.Unknown)
			}
		}
	}
	flood() // within the cooldown of the initial Refresh: no fetch at all
	if got, want := e.srv.hits.Load(), int64(1); got != want {
		t.Fatalf("JWKS fetches after a flood within the cooldown: got %d, want %d", got, want)
	}
	e.clock.Advance(31 * time.Second)
	flood() // one refetch, then the cooldown again
	if got, want := e.srv.hits.Load(), int64(2); got != want {
		t.Fatalf("JWKS fetches after a flood past the cooldown: got %d, want %d", got, want)
	}
}

func TestRotation(t *testing.T) {
	e := newEnv(t, func(c *jwtauth.Config) { c.UnknownKIDWait = 5 * time.Second })
	k := e.keys
	oldTok := sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa"}, claimsAt(t0))
	newClaims := with(claimsAt(t0), "jti", "new")
	newTok := sign(t, "RS256", k.rsa2, map[string]any{"alg": "RS256", "kid": "rsa-2"}, newClaims)
	if _, got := e.v.Verify(context.Background(), oldTok); got != authn.OK {
		t.Fatalf("old key before rotation: got %v, want ok", got)
	}
	e.srv.set(jwks(jwkRSA(&k.rsa2.PublicKey, "rsa-2")))
	if _, got := e.v.Verify(context.Background(), newTok); got != authn.Unknown {
		t.Fatalf("new key within the cooldown: got %v, want %v", got, authn.Unknown)
	}
	e.clock.Advance(30 * time.Second)
	if _, got := e.v.Verify(context.Background(), newTok); got != authn.OK {
		t.Fatalf("new key after the cooldown: got %v, want ok", got)
	}
	// The old token is in the cache; a fresh token with the old key is not.
	freshOld := sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa"}, with(claimsAt(t0), "jti", "x"))
	if _, got := e.v.Verify(context.Background(), freshOld); got != authn.Unknown {
		t.Fatalf("removed key: got %v, want %v", got, authn.Unknown)
	}
}

func TestFailedFetchKeepsLastGoodSet(t *testing.T) {
	e := newEnv(t, nil)
	tok := sign(t, "ES256", e.keys.ec, map[string]any{"alg": "ES256", "kid": "ec"}, claimsAt(t0))
	for _, tc := range []struct {
		name   string
		status int
		body   []byte
	}{
		{"HTTP 500", http.StatusInternalServerError, []byte("oops")},
		{"not JSON", http.StatusOK, []byte("<html>")},
		{"no usable key", http.StatusOK, jwks(map[string]any{"kty": "oct", "k": "c2VjcmV0"})},
		{"too large", http.StatusOK, []byte(`{"keys":[],"pad":"` + strings.Repeat("x", 2<<20) + `"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.srv.status.Store(int64(tc.status))
			e.srv.set(tc.body)
			if err := e.v.Refresh(context.Background()); err == nil {
				t.Fatalf("Refresh: got nil error, want one")
			}
			if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
				t.Errorf("Verify after a failed refresh: got %v, want ok", got)
			}
		})
	}
}

func TestNoSetLoadedIsUnavailable(t *testing.T) {
	srv := newJWKSServer(t, nil)
	srv.status.Store(http.StatusServiceUnavailable)
	v, err := jwtauth.New(jwtauth.Config{
		Issuers:        []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}},
		UnknownKIDWait: 5 * time.Second,
		Now:            newClock().Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, "EdDSA", fixture().ed, map[string]any{"alg": "EdDSA", "kid": "ed"}, claimsAt(t0))
	if _, got := v.Verify(context.Background(), tok); got != authn.Unavailable {
		t.Errorf("got %v, want %v", got, authn.Unavailable)
	}
	if got := srv.hits.Load(); got != 1 {
		t.Errorf("fetches: got %d, want 1", got)
	}
}

func TestJWKSFile(t *testing.T) {
	path := t.TempDir() + "/jwks.json"
	k := fixture()
	if err := os.WriteFile(path, jwks(jwkEd(k.ed.Public().(ed25519.PublicKey), "ed")), 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := jwtauth.New(jwtauth.Config{
		Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSFile: path}},
		Now:     newClock().Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed"}, claimsAt(t0))
	if _, got := v.Verify(context.Background(), tok); got != authn.OK {
		t.Errorf("got %v, want ok", got)
	}
}

func TestKeyAlgorithmBinding(t *testing.T) {
	k := fixture()
	rsaRS := jwkRSA(&k.rsa.PublicKey, "rs-only")
	rsaRS["alg"] = "RS256"
	e := newEnv(t, func(c *jwtauth.Config) {
		c.Issuers[0].Algorithms = []string{"RS256", "PS256", "EdDSA"}
		c.Issuers[0].DropUnacceptableKeys = true // the 1024-bit and oct keys are dropped, not fatal
	})
	e.srv.set(jwks(rsaRS, jwkRSA(&k.rsaSmall.PublicKey, "small"), jwkEC(&k.ec.PublicKey, "ec"),
		jwkEd(k.ed.Public().(ed25519.PublicKey), "ed"),
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64([]byte("secret"))}))
	if err := e.v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, alg, kid string
		key            crypto.Signer
		want           authn.Reason
	}{
		{"RS256 on an RS256 key", "RS256", "rs-only", k.rsa, authn.OK},
		{"PS256 on an RS256 key", "PS256", "rs-only", k.rsa, authn.UnsupportedAlgorithm},
		{"1024-bit RSA key is ignored", "RS256", "small", k.rsaSmall, authn.Unknown},
		{"ES256 not allowed for the issuer", "ES256", "ec", k.ec, authn.UnsupportedAlgorithm},
		{"oct key is ignored", "EdDSA", "hmac", k.ed, authn.Unknown},
		{"EdDSA", "EdDSA", "ed", k.ed, authn.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, tc.alg, tc.key, map[string]any{"alg": tc.alg, "kid": tc.kid}, claimsAt(t0))
			if _, got := e.v.Verify(context.Background(), tok); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNoKIDOnlyWhenUnambiguous(t *testing.T) {
	k := fixture()
	e := newEnv(t, nil)
	e.srv.set(jwks(jwkRSA(&k.rsa.PublicKey, "a"), jwkRSA(&k.rsa2.PublicKey, "b"), jwkEC(&k.ec.PublicKey, "")))
	if err := e.v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want authn.Reason
	}{
		{"two RSA keys", sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256"}, claimsAt(t0)), authn.Unknown},
		{"one EC key", sign(t, "ES256", k.ec, map[string]any{"alg": "ES256"}, claimsAt(t0)), authn.OK},
		{"empty kid matches exactly", sign(t, "ES256", k.ec, map[string]any{"alg": "ES256", "kid": ""}, with(claimsAt(t0), "jti", "2")), authn.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := e.v.Verify(context.Background(), tc.tok); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClaimMapping(t *testing.T) {
	e := newEnv(t, func(c *jwtauth.Config) {
		c.Issuers[0].Claims = jwtauth.ClaimsConfig{
			Subject: "client_id",
			Tenant:  "org.id",
			Roles:   "realm_access.roles",
			Tier:    "https://example.com/tier",
			Copy:    []string{"email", "email_verified", "https://example.com/groups", "org.id", "missing", "obj"},
		}
		c.Issuers[0].RequiredClaims = []string{"jti", "client_id"}
	})
	base := with(claimsAt(t0), "client_id", "svc-a", "org", map[string]any{"id": "t-1"},
		"realm_access", map[string]any{"roles": []string{"admin", "reader"}},
		"https://example.com/tier", "paid", "email", "a@example.com", "email_verified", true,
		"https://example.com/groups", []string{"g1", "g2"}, "obj", map[string]any{"a": 1})
	wantBase := authn.Principal{
		Subject: "svc-a", Tenant: "t-1", Roles: []string{"admin", "reader"}, Tier: "paid",
		Method: authn.MethodJWT, CredentialID: "jti-1", ExpiresAt: t0.Add(time.Hour),
		Claims: map[string]string{"email": "a@example.com", "email_verified": "true",
			"https://example.com/groups": "g1 g2", "org.id": "t-1"},
	}
	for _, tc := range []struct {
		name   string
		claims map[string]any
		want   authn.Principal
		reason authn.Reason
	}{
		{"no scope claim: not narrowed", base, wantBase, authn.OK},
		{"scope string", with(base, "scope", "orders:read  orders:write"),
			withScopes(wantBase, "orders:read", "orders:write"), authn.OK},
		{"scp array", with(base, "scp", []string{"a", "b"}), withScopes(wantBase, "a", "b"), authn.OK},
		{"empty scope narrows to nothing", with(base, "scope", ""), withScopes(wantBase), authn.OK},
		{"roles as a string", with(base, "realm_access", map[string]any{"roles": "x y"}),
			func() authn.Principal { p := wantBase; p.Roles = []string{"x", "y"}; return p }(), authn.OK},
		{"scope split on U+0020 only", with(base, "scope", "read\u00a0admin admin\u2003x\tadmin \u00a0admin"),
			withScopes(wantBase, "read\u00a0admin", "admin\u2003x\tadmin", "\u00a0admin"), authn.OK},
		{"scope with a trailing no-break space", with(base, "scope", "admin\u00a0"), withScopes(wantBase, "admin\u00a0"), authn.OK},
		{"scp string split on U+0020 only", with(base, "scp", "a\u3000b c"), withScopes(wantBase, "a\u3000b", "c"), authn.OK},
		{"roles split on U+0020 only", with(base, "realm_access", map[string]any{"roles": "reader\u00a0admin\n"}),
			func() authn.Principal { p := wantBase; p.Roles = []string{"reader\u00a0admin\n"}; return p }(), authn.OK},
		{"scope as an array", with(base, "scope", []string{"admin"}), authn.Principal{}, authn.Malformed},
		{"scope as a number", with(base, "scope", 1), authn.Principal{}, authn.Malformed},
		{"scp holding a number", with(base, "scp", []any{"a", 1}), authn.Principal{}, authn.Malformed},
		{"scope not a string, scp fine", with(base, "scope", true, "scp", []string{"a"}), authn.Principal{}, authn.Malformed},
		{"roles not strings", with(base, "realm_access", map[string]any{"roles": []any{1}}), authn.Principal{}, authn.Malformed},
		{"tenant not a string", with(base, "org", map[string]any{"id": 7}), authn.Principal{}, authn.Malformed},
		{"required jti missing", with(base, "jti", nil), authn.Principal{}, authn.Malformed},
		{"subject claim missing", with(base, "client_id", nil), authn.Principal{}, authn.Malformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := sign(t, "EdDSA", e.keys.ed, map[string]any{"alg": "EdDSA", "kid": "ed"}, tc.claims)
			got, reason := e.v.Verify(context.Background(), tok)
			if reason != tc.reason {
				t.Fatalf("reason: got %v, want %v", reason, tc.reason)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("principal (-got +want):\n%s", diff)
			}
		})
	}
}

func withScopes(p authn.Principal, s ...string) authn.Principal {
	p.Scopes = append([]string{}, s...)
	return p
}

func TestCacheNeverServesPastExp(t *testing.T) {
	// No leeway: at exp a full verification refuses the token, so only a cache serving past
	// exp could accept it.
	e := newEnv(t, func(c *jwtauth.Config) { c.Issuers[0].Leeway = -1 })
	k := e.keys
	tok := sign(t, "RS256", k.rsa, map[string]any{"alg": "RS256", "kid": "rsa"},
		with(claimsAt(t0), "exp", t0.Add(time.Minute).Unix()))
	if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
		t.Fatalf("first: got %v, want ok", got)
	}
	for _, tc := range []struct {
		at   time.Duration
		want authn.Reason
	}{
		{30 * time.Second, authn.OK},              // served from the cache
		{time.Minute - time.Nanosecond, authn.OK}, // last instant before exp
		{time.Minute, authn.Expired},              // at exp the cache is bypassed
	} {
		e.clock.Set(t0.Add(tc.at))
		if _, got := e.v.Verify(context.Background(), tok); got != tc.want {
			t.Errorf("at t0+%v: got %v, want %v", tc.at, got, tc.want)
		}
	}
}

func TestRevocationMemory(t *testing.T) {
	e := newEnv(t, nil)
	tok := sign(t, "ES256", e.keys.ec, map[string]any{"alg": "ES256", "kid": "ec"}, claimsAt(t0))
	other := sign(t, "ES256", e.keys.ec, map[string]any{"alg": "ES256", "kid": "ec"}, with(claimsAt(t0), "jti", "jti-2"))
	for _, s := range []string{tok, tok, other} { // the second is a cache hit
		if _, got := e.v.Verify(context.Background(), s); got != authn.OK {
			t.Fatalf("before revocation: got %v, want ok", got)
		}
	}
	if err := e.v.Revoke(context.Background(), "jti-1", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		at   time.Duration
		tok  string
		want authn.Reason
	}{
		{"revoked, cached", 0, tok, authn.Revoked},
		{"other jti", 0, other, authn.OK},
		{"revoked within exp leeway", time.Hour + 10*time.Second, tok, authn.Revoked},
		{"past exp and leeway", time.Hour + 31*time.Second, tok, authn.Expired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.clock.Set(t0.Add(tc.at))
			if _, got := e.v.Verify(context.Background(), tc.tok); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := jwtauth.IssuerConfig{Issuer: testIssuer, Audiences: []string{"a"}, JWKSURL: "https://x.test/jwks"}
	for _, tc := range []struct {
		name string
		edit func(*jwtauth.IssuerConfig)
	}{
		{"no issuer", func(c *jwtauth.IssuerConfig) { c.Issuer = "" }},
		{"no audience", func(c *jwtauth.IssuerConfig) { c.Audiences = nil }},
		{"empty audience", func(c *jwtauth.IssuerConfig) { c.Audiences = []string{""} }},
		{"no JWKS", func(c *jwtauth.IssuerConfig) { c.JWKSURL = "" }},
		{"URL and file", func(c *jwtauth.IssuerConfig) { c.JWKSFile = "/tmp/x" }},
		{"ftp URL", func(c *jwtauth.IssuerConfig) { c.JWKSURL = "ftp://x.test/jwks" }},
		{"file URL", func(c *jwtauth.IssuerConfig) { c.JWKSURL = "file:///etc/passwd" }},
		{"relative URL", func(c *jwtauth.IssuerConfig) { c.JWKSURL = "/jwks" }},
		{"HS256", func(c *jwtauth.IssuerConfig) { c.Algorithms = []string{"HS256"} }},
		{"none", func(c *jwtauth.IssuerConfig) { c.Algorithms = []string{"none"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := ok
			tc.edit(&ic)
			if _, err := jwtauth.New(jwtauth.Config{Issuers: []jwtauth.IssuerConfig{ic}}); err == nil {
				t.Errorf("New: got nil error, want one")
			}
		})
	}
	if _, err := jwtauth.New(jwtauth.Config{Issuers: []jwtauth.IssuerConfig{ok, ok}}); err == nil {
		t.Errorf("New with a duplicate issuer: got nil error, want one")
	}
	if _, err := jwtauth.New(jwtauth.Config{Issuers: []jwtauth.IssuerConfig{ok}}); err != nil {
		t.Errorf("New with a good config: %v", err)
	}
}

func TestVerifierIsTokenVerifier(t *testing.T) {
	var _ authn.TokenVerifier = (*jwtauth.Verifier)(nil)
}

func TestCacheHitAllocations(t *testing.T) {
	e := newEnv(t, nil)
	tok := sign(t, "RS256", e.keys.rsa, map[string]any{"alg": "RS256", "kid": "rsa"}, claimsAt(t0))
	if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
		t.Fatalf("got %v, want ok", got)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, got := e.v.Verify(context.Background(), tok); got != authn.OK {
			t.Fatalf("got %v, want ok", got)
		}
	})
	if allocs != 0 {
		t.Errorf("allocations per cached verification: got %v, want 0", allocs)
	}
}
