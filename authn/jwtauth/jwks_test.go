package jwtauth

import (
	"bytes"
	"encoding/asn1"
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
	for _, tc := range []struct {
		name     string
		set      string
		wantKeys int
		wantErr  bool
	}{
		{"EC", ec(""), 1, false},
		{"EC with use sig and key_ops verify", ec(`,"use":"sig","key_ops":["verify"]`), 1, false},
		{"EC for encryption", ec(`,"use":"enc"`), 0, true},
		{"EC key_ops sign only", ec(`,"key_ops":["sign"]`), 0, true},
		{"EC with private d", ec(`,"d":"AAAA"`), 0, true},
		{"EC alg RS256 contradicts the key", ec(`,"alg":"RS256"`), 0, true},
		{"EC point not on the curve", strings.Replace(ec(""), ecY, "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1", 1), 0, true},
		{"EC P-384", strings.Replace(ec(""), "P-256", "P-384", 1), 0, true},
		{"EC short x", strings.Replace(ec(""), ecX, ecX[:40], 1), 0, true},
		{"EC padded x", strings.Replace(ec(""), ecX, ecX+"=", 1), 0, true},
		{"Ed25519", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + edX + `"}]}`, 1, false},
		{"Ed25519 alg Ed25519", `{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"` + edX + `"}]}`, 1, false},
		{"X25519", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + edX + `"}]}`, 0, true},
		{"oct", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, 0, true},
		{"RSA too small", `{"keys":[{"kty":"RSA","n":"` + strings.Repeat("A", 170) + `w","e":"AQAB"}]}`, 0, true},
		{"one good one bad", `{"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"OKP","crv":"Ed25519","x":"` + edX + `"}]}`, 1, false},
		{"duplicate kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + edX + `"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + edX + `"}]}`, 0, true},
		{"duplicate member", `{"keys":[{"kty":"OKP","crv":"Ed25519","crv":"X25519","x":"` + edX + `"}]}`, 0, true},
		{"keys not an array", `{"keys":{}}`, 0, true},
		{"not JSON", `<html>`, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks, err := parseJWKS([]byte(tc.set), algAll)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error: got %v, want error %v", err, tc.wantErr)
			}
			if err == nil && len(ks.all) != tc.wantKeys {
				t.Errorf("keys: got %d, want %d", len(ks.all), tc.wantKeys)
			}
		})
	}
}
