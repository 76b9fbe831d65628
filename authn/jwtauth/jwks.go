package jwtauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/wardenhq/warden/authn"
)

const (
	minRSABits = 2048
	// maxRSABits bounds the cost of one verification an attacker can make us do.
	maxRSABits = 8192
)

// jwk is one usable verification key with the algorithms it is bound to. Immutable.
type jwk struct {
	kid    string
	hasKID bool
	algs   alg
	rsa    *rsa.PublicKey
	ec     *ecdsa.PublicKey
	ed     ed25519.PublicKey
}

// keySet is a parsed JWK Set. Immutable once built; replaced whole on refresh.
type keySet struct {
	byKID map[string]*jwk
	all   []*jwk
	// skipped counts keys that were ignored (unsupported type, curve, use, size…), for the log.
	skipped []string
}

// parseJWKS parses an RFC 7517 JWK Set and keeps the keys that can verify at least one
// algorithm of allowed. A key that cannot be used is skipped (and named in skipped); a set
// with no usable key, or two usable keys with the same kid, is an error.
func parseJWKS(data []byte, allowed alg) (*keySet, error) {
	doc, err := decodeObject(data)
	if err != nil {
		return nil, err
	}
	raw, ok := doc["keys"].([]any)
	if !ok {
		return nil, errors.New(`JWK Set: "keys" missing or not an array`)
	}
	ks := &keySet{byKID: make(map[string]*jwk)}
	for i, r := range raw {
		obj, ok := r.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("JWK Set: key %d is not an object", i)
		}
		k, err := parseJWK(obj, allowed)
		if err != nil {
			ks.skipped = append(ks.skipped, fmt.Sprintf("key %d (kid %.64q): %v", i, str(obj["kid"]), err))
			continue
		}
		if k.hasKID {
			if _, dup := ks.byKID[k.kid]; dup {
				return nil, fmt.Errorf("JWK Set: duplicate kid %.64q", k.kid)
			}
			ks.byKID[k.kid] = k
		}
		ks.all = append(ks.all, k)
	}
	if len(ks.all) == 0 {
		return nil, fmt.Errorf("JWK Set: no usable key (%d skipped)", len(ks.skipped))
	}
	return ks, nil
}

func str(v any) string { s, _ := v.(string); return s }

func parseJWK(m map[string]any, allowed alg) (*jwk, error) {
	k := &jwk{}
	if v, ok := m["kid"]; ok {
		if k.kid, ok = v.(string); !ok {
			return nil, errors.New("kid not a string")
		}
		k.hasKID = true
	}
	if v, ok := m["use"]; ok && v != "sig" {
		return nil, errors.New(`use is not "sig"`)
	}
	if v, ok := m["key_ops"]; ok {
		ops, _ := v.([]any)
		if !slices.Contains(ops, any("verify")) {
			return nil, errors.New(`key_ops lacks "verify"`)
		}
	}
	if _, ok := m["d"]; ok {
		return nil, errors.New("private key material in a public set")
	}
	var bound alg // what the key type can do, narrowed by the key's own alg
	switch m["kty"] {
	case "RSA":
		pub, err := rsaKey(m)
		if err != nil {
			return nil, err
		}
		k.rsa, bound = pub, algRS256|algPS256
	case "EC":
		if m["crv"] != "P-256" {
			return nil, fmt.Errorf("EC curve %.20q not supported", str(m["crv"]))
		}
		x, err1 := fixedB64(m, "x", 32)
		y, err2 := fixedB64(m, "y", 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("EC point: %v", err)
		}
		k.ec, bound = pub, algES256
	case "OKP":
		if m["crv"] != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %.20q not supported", str(m["crv"]))
		}
		x, err := fixedB64(m, "x", ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		k.ed, bound = ed25519.PublicKey(x), algEdDSA
	default:
		return nil, fmt.Errorf("kty %.20q not supported", str(m["kty"]))
	}
	if v, ok := m["alg"]; ok {
		name, _ := v.(string)
		if name == "Ed25519" { // RFC 9864 fully-specified name
			name = "EdDSA"
		}
		bound &= algByName(name)
	}
	if k.algs = bound & allowed; k.algs == 0 {
		return nil, errors.New("no allowed algorithm for this key")
	}
	return k, nil
}

func fixedB64(m map[string]any, name string, size int) ([]byte, error) {
	s, ok := m[name].(string)
	if !ok {
		return nil, fmt.Errorf("%s missing", name)
	}
	b, err := decodeB64(s)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%s: %d bytes, want %d", name, len(b), size)
	}
	return b, nil
}

func rsaKey(m map[string]any) (*rsa.PublicKey, error) {
	ns, _ := m["n"].(string)
	es, _ := m["e"].(string)
	nb, err := decodeB64(ns)
	if err != nil || len(nb) == 0 {
		return nil, fmt.Errorf("RSA n invalid")
	}
	eb, err := decodeB64(es)
	if err != nil || len(eb) == 0 || len(eb) > 4 {
		return nil, fmt.Errorf("RSA e invalid")
	}
	n := new(big.Int).SetBytes(nb)
	if bits := n.BitLen(); bits < minRSABits || bits > maxRSABits {
		return nil, fmt.Errorf("RSA key of %d bits (want %d to %d)", bits, minRSABits, maxRSABits)
	}
	var e int64
	for _, c := range eb {
		e = e<<8 | int64(c)
	}
	if e < 3 || e&1 == 0 || e > 1<<31-1 {
		return nil, fmt.Errorf("RSA exponent %d invalid", e)
	}
	return &rsa.PublicKey{N: n, E: int(e)}, nil
}

// find returns the key that verifies a token with this kid (if any) and algorithm. A kid is
// matched exactly; a token without a kid matches only when exactly one key can verify a.
func (ks *keySet) find(kid string, hasKID bool, a alg) (*jwk, *failure) {
	if hasKID {
		k := ks.byKID[kid]
		if k == nil {
			return nil, fail(authn.Unknown, "kid %.64q not in the JWK Set", kid)
		}
		if k.algs&a == 0 {
			return nil, fail(authn.UnsupportedAlgorithm, "key %.64q is not bound to %v", kid, a)
		}
		return k, nil
	}
	var found *jwk
	for _, k := range ks.all {
		if k.algs&a == 0 {
			continue
		}
		if found != nil {
			return nil, fail(authn.Unknown, "no kid and several keys verify %v", a)
		}
		found = k
	}
	if found == nil {
		return nil, fail(authn.Unknown, "no kid and no key verifies %v", a)
	}
	return found, nil
}

// verify checks sig over input with algorithm a, which the caller has checked k is bound to.
func (k *jwk) verify(a alg, input string, sig []byte) bool {
	if k.algs&a == 0 {
		return false
	}
	digest := sha256.Sum256([]byte(input))
	switch a {
	case algRS256:
		return k.rsa != nil && rsa.VerifyPKCS1v15(k.rsa, crypto.SHA256, digest[:], sig) == nil
	case algPS256:
		return k.rsa != nil && rsa.VerifyPSS(k.rsa, crypto.SHA256, digest[:], sig,
			&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
	case algES256:
		// JWS ES256 is raw r||s, 32 bytes each (RFC 7518 §3.4); DER is refused by length.
		if k.ec == nil || len(sig) != 64 {
			return false
		}
		der, ok := rawToDER(sig)
		if !ok { // r or s is zero: CVE-2022-21449 ("psychic signatures")
			return false
		}
		// VerifyASN1 is several times faster than Verify with big.Ints in Go 1.26.
		return ecdsa.VerifyASN1(k.ec, digest[:], der)
	case algEdDSA:
		return k.ed != nil && len(sig) == ed25519.SignatureSize && ed25519.Verify(k.ed, []byte(input), sig)
	}
	return false
}

// rawToDER re-encodes a raw ES256 signature r||s (32 bytes each) as the ASN.1 DER
// SEQUENCE { INTEGER r, INTEGER s } that ecdsa.VerifyASN1 takes. It refuses r or s of zero;
// the range check against the group order is VerifyASN1's.
func rawToDER(sig []byte) ([]byte, bool) {
	r, s := derInt(sig[:32]), derInt(sig[32:])
	if r == nil || s == nil {
		return nil, false
	}
	out := make([]byte, 0, 2+len(r)+len(s)) // at most 2 + 2*35 bytes: short-form lengths
	out = append(out, 0x30, byte(len(r)+len(s)))
	out = append(out, r...)
	return append(out, s...), true
}

// derInt encodes an unsigned big-endian integer as a DER INTEGER, nil when it is zero.
func derInt(b []byte) []byte {
	for len(b) > 0 && b[0] == 0 {
		b = b[1:]
	}
	if len(b) == 0 {
		return nil
	}
	pad := 0
	if b[0]&0x80 != 0 {
		pad = 1
	}
	out := make([]byte, 0, 2+pad+len(b))
	out = append(out, 0x02, byte(pad+len(b)))
	if pad == 1 {
		out = append(out, 0)
	}
	return append(out, b...)
}
