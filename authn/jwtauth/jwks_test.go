package jwtauth

import (
	"bytes"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func TestRawToDER(t *testing.T) {
	for _, tc := range []struct {
		name string
		r, s []byte
		ok   bool
	}{
		{"small", []byte{1}, []byte{2}, true},
		{"high bit", bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0x80}, 32), true},
		{"leading zeros", append(make([]byte, 31), 0x7f), append(make([]byte, 5), bytes.Repeat([]byte{0x81}, 27)...), true},
		{"r zero", nil, []byte{1}, false},
		{"s zero", []byte{1}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := make([]byte, 64)
			r, s := new(big.Int).SetBytes(tc.r), new(big.Int).SetBytes(tc.s)
			r.FillBytes(raw[:32])
			s.FillBytes(raw[32:])
			got, ok := rawToDER(raw)
			if ok != tc.ok {
				t.Fatalf("ok: got %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			want, err := asn1.Marshal(struct{ R, S *big.Int }{r, s})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("DER: got %x, want %x", got, want)
			}
		})
	}
}

func TestParseJWKS(t *testing.T) {
	// RFC 7515 appendix A.3 key (P-256) and RFC 8037 appendix A.2 key (Ed25519).
	const (
		ecX = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"
		ecY = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
		edX = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
	)
	ec := func(extra string) string {
		return `{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"` + ecX + `","y":"` + ecY + `"` + extra + `}]}`
	}
	ed := `{"kty":"OKP","crv":"Ed25519","x":"` + edX + `"}`
	for _, tc := range []struct {
		name     string
		set      string
		wantKeys int
		wantErr  bool
		drop     bool // DropUnacceptableKeys
	}{
		{"EC", ec(""), 1, false, false},
		{"EC with use sig and key_ops verify", ec(`,"use":"sig","key_ops":["verify"]`), 1, false, false},
		{"EC for encryption", ec(`,"use":"enc"`), 0, true, false},
		{"EC key_ops sign only", ec(`,"key_ops":["sign"]`), 0, true, false},
		{"EC with private d", ec(`,"d":"AAAA"`), 0, true, false},
		{"EC alg RS256 contradicts the key", ec(`,"alg":"RS256"`), 0, true, false},
		{"EC point not on the curve", strings.Replace(ec(""), ecY, "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1", 1), 0, true, false},
		{"EC P-384", strings.Replace(ec(""), "P-256", "P-384", 1), 0, true, false},
		{"EC short x", strings.Replace(ec(""), ecX, ecX[:40], 1), 0, true, false},
		{"EC padded x", strings.Replace(ec(""), ecX, ecX+"=", 1), 0, true, false},
		{"Ed25519", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + edX + `"}]}`, 1, false, false},
		{"Ed25519 alg Ed25519", `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"` + edX + `"}]}`, 1, false, false},
		{"X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + edX + `"}]}`, 0, true, false},
		{"oct", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, 0, true, false},
		{"RSA too small", `{"keys":[{"kty":"RSA","n":"` + strings.Repeat("A", 170) + `w","e":"AQAB"}]}`, 0, true, false},
		{"oct beside a good key refuses the set", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},` + ed + `]}`, 0, true, false},
		{"oct beside a good key, dropped", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},` + ed + `]}`, 1, false, true},
		{"enc key beside a good key refuses the set", strings.Replace(ec(`,"use":"enc"`), "]}", ","+ed+"]}", 1), 0, true, false},
		{"enc key beside a good key, dropped", strings.Replace(ec(`,"use":"enc"`), "]}", ","+ed+"]}", 1), 1, false, true},
		{"small RSA beside a good key refuses the set", `{"keys":[{"kty":"RSA","n":"` + strings.Repeat("A", 170) + `w","e":"AQAB"},` + ed + `]}`, 0, true, false},
		{"off-curve point beside a good key refuses the set", strings.Replace(strings.Replace(ec(""), ecY, "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1", 1), "]}", ","+ed+"]}", 1), 0, true, false},
		{"key_ops sign beside a good key refuses the set", strings.Replace(ec(`,"key_ops":["sign"]`), "]}", ","+ed+"]}", 1), 0, true, false},
		{"P-384 beside a good key is skipped", strings.Replace(strings.Replace(ec(""), "P-256", "P-384", 1), "]}", ","+ed+"]}", 1), 1, false, false},
		{"unknown alg beside a good key is skipped", strings.Replace(ec(`,"alg":"ES384"`), "]}", ","+ed+"]}", 1), 1, false, false},
		{"contradicting alg beside a good key refuses the set", strings.Replace(ec(`,"alg":"RS256"`), "]}", ","+ed+"]}", 1), 0, true, false},
		{"duplicate kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + edX + `"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + edX + `"}]}`, 0, true, false},
		{"duplicate member", `{"keys":[{"kty":"OKP","crv":"Ed25519","crv":"X25519","x":"` + edX + `"}]}`, 0, true, false},
		{"keys not an array", `{"keys":{}}`, 0, true, false},
		{"not JSON", `<html>`, 0, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := parseJWKS([]byte(tc.set), algAll, tc.drop)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tc.wantErr)
			}
			if err == nil && len(ks.all) != tc.wantKeys {
				t.Errorf("keys: got %d, want %d", len(ks.all), tc.wantKeys)
			}
		})
	}
}

// A refused key is reported with the line of its object in the set's text.
func TestParseJWKSNamesTheLine(t *testing.T) {
	const set = `{
  "keys": [
    {"kty": "OKP", "crv": "Ed25519", "kid": "good", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},

    {
      "kty": "oct", "kid": "hmac", "k": "c2VjcmV0"
    }
  ]
}`
	_, err := parseJWKS([]byte(set), algAll, false)
	var je *JWKSError
	if !errors.As(err, &je) {
		t.Fatalf("got %v, want a *JWKSError", err)
	}
	if je.Line != 5 || je.Key != 1 || je.KID != "hmac" {
		t.Errorf("got line %d key %d kid %q, want line 5 key 1 kid hmac", je.Line, je.Key, je.KID)
	}
	je.Source = "jwks.json"
	if got, want := je.Error(), `jwks.json:5: key 1 (kid "hmac"): symmetric key (kty oct) in a public set`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
