package jwtauth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// A token-shaped seed: {"alg":"RS256","kid":"k"} . {"sub":"a","exp":1} . "sig"
const seedToken = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJzdWIiOiJhIiwiZXhwIjoxfQ.c2ln"

func FuzzParseJWS(f *testing.F) {
	for _, s := range []string{
		seedToken,
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.",
		"e30.e30.e30",
		"eyJhbGciOiJFUzI1NiIsImFsZyI6IkVTMjU2In0.e30.AA",
		"a.b.c.d.e",
		"eyJhbGciOiJFZERTQSIsImp3ayI6e319.e30.AA==",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		j, fl := parseJWS(token)
		if fl != nil {
			if fl.reason == 0 {
				t.Fatalf("failure without a reason: %s", fl.detail)
			}
			return
		}
		// Whatever parses is canonical: three non-empty URL-alphabet segments, a known
		// algorithm, a signing input that is the token's prefix, and JSON objects without
		// duplicate members (re-encoding the claims must give an object of the same size).
		if strings.Count(token, ".") != 2 || !strings.HasPrefix(token, j.signingInput+".") {
			t.Fatalf("parsed a token that is not three segments: %q", token)
		}
		if j.alg == 0 || j.alg&algAll != j.alg {
			t.Fatalf("parsed alg %v", j.alg)
		}
		for _, seg := range strings.Split(token, ".") {
			if _, err := decodeB64(seg); err != nil {
				t.Fatalf("segment %q parsed but is not canonical base64url: %v", seg, err)
			}
			if b64.EncodeToString(mustDecode(t, seg)) != seg {
				t.Fatalf("segment %q does not re-encode to itself", seg)
			}
		}
		payload := mustDecode(t, strings.Split(token, ".")[1])
		var loose map[string]any
		if err := json.Unmarshal(payload, &loose); err != nil {
			t.Fatalf("strict decoder accepted what encoding/json refuses: %v", err)
		}
		if len(loose) != len(j.claims) {
			t.Fatalf("claims: %d members strictly, %d loosely", len(j.claims), len(loose))
		}
	})
}

func mustDecode(t *testing.T, s string) []byte {
	b, err := decodeB64(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func FuzzParseJWKS(f *testing.F) {
	for _, s := range []string{
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`,
		`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
		`{"keys":[],"keys":[]}`,
		"{\n \"keys\": [\n  {\"kty\":\"oct\",\"k\":\"c2VjcmV0\"},\n  {\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"use\":\"enc\",\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}\n ]\n}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ks, err := parseJWKS(data, algAll, true)
		strict, serr := parseJWKS(data, algAll, false)
		if serr == nil && (err != nil || len(strict.all) != len(ks.all) || ks.dropped != 0) {
			t.Fatalf("a set accepted strictly changes when unacceptable keys may be dropped: %v", err)
		}
		var je *JWKSError
		if serr != nil && !errors.As(serr, &je) {
			t.Fatalf("refusal is not a *JWKSError: %v", serr)
		}
		if err != nil {
			return
		}
		if len(ks.all) == 0 {
			t.Fatal("a set without usable keys was accepted")
		}
		for _, k := range ks.all {
			switch {
			case k.algs == 0 || k.algs&algAll != k.algs:
				t.Fatalf("key %q bound to %v", k.kid, k.algs)
			case k.rsa != nil && (k.algs&^(algRS256|algPS256) != 0 || k.rsa.N.BitLen() < minRSABits):
				t.Fatalf("RSA key %q: algs %v, %d bits", k.kid, k.algs, k.rsa.N.BitLen())
			case k.ec != nil && k.algs != algES256:
				t.Fatalf("EC key %q bound to %v", k.kid, k.algs)
			case k.ed != nil && k.algs != algEdDSA:
				t.Fatalf("Ed25519 key %q bound to %v", k.kid, k.algs)
			case k.rsa == nil && k.ec == nil && k.ed == nil:
				t.Fatalf("key %q has no public key", k.kid)
			}
		}
	})
}

func BenchmarkParseJWS(b *testing.B) {
	const tok = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYSIsInR5cCI6ImF0K2p3dCJ9." +
		"eyJhdWQiOiJ3YXJkZW4iLCJleHAiOjE3NzIzNzA4MDAsImlhdCI6MTc3MjM2NzIwMCwiaXNzIjoiaHR0cHM6Ly9pc3N1ZXIudGVzdC8iLCJqdGkiOiJqdGktMSIsIm5iZiI6MTc3MjM2NzIwMCwic2NvcGUiOiJvcmRlcnM6cmVhZCBvcmRlcnM6d3JpdGUiLCJzdWIiOiJ1c2VyLTEiLCJ0ZW5hbnQiOiJ0LTEifQ." +
		"c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
	b.ReportAllocs()
	for b.Loop() {
		if _, f := parseJWS(tok); f != nil {
			b.Fatal(f.detail)
		}
	}
}

// FuzzClaimLists checks scope and role splitting (issue 16): only U+0020 separates values;
// every other character, Unicode spaces and controls included, stays inside its value.
func FuzzClaimLists(f *testing.F) {
	for _, s := range []string{
		"read admin", "read\u00a0admin", "admin\u00a0", "\u00a0admin", "read\u2003admin", "read\u3000admin",
		"read\tadmin", "read\nadmin", "read\radmin", "read\vadmin", "read\fadmin", "read\u0085admin",
		"read\u2028admin", "read\u200badmin", "read\ufeffadmin", "read\x00admin", "read\x1fadmin",
		"  read   admin  ", "", " ", "admin", "orders:read orders:write",
	} {
		f.Add(s)
	}
	is := &issuer{}
	f.Fuzz(func(t *testing.T, s string) {
		var want []string
		for _, v := range strings.Split(s, " ") {
			if v != "" {
				want = append(want, v)
			}
		}
		got := splitSpaces(s)
		if got == nil || len(got) != len(want) {
			t.Fatalf("splitSpaces(%q): got %q, want %q", s, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("splitSpaces(%q): got %q, want %q", s, got, want)
			}
		}
		// The same values whatever the claim: scope (string), scp (string), roles.
		for _, claims := range []map[string]any{{"scope": s}, {"scp": s}} {
			scopes, ok := is.scopes(claims)
			if !ok || strings.Join(scopes, " ") != strings.Join(want, " ") {
				t.Fatalf("scopes(%v): got %q, %v; want %q", claims, scopes, ok, want)
			}
		}
		if roles, ok := stringList(s); !ok || strings.Join(roles, " ") != strings.Join(want, " ") {
			t.Fatalf("stringList(%q): got %q, %v; want %q", s, roles, ok, want)
		}
		// An array as the scope claim is refused; as scp it is taken element by element.
		if _, ok := is.scopes(map[string]any{"scope": []any{s}}); ok {
			t.Fatalf("scope as an array accepted")
		}
		if scp, ok := is.scopes(map[string]any{"scp": []any{s}}); !ok || len(scp) != 1 || scp[0] != s {
			t.Fatalf("scp [%q]: got %q, %v", s, scp, ok)
		}
	})
}
