package jwtauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync/atomic"

	"github.com/wardenhq/warden/authn"
)

const (
	minRSABits = 2048
	// maxRSABits bounds the cost of one verification an attacker can make us do.
	maxRSABits = 8192
)

// jwk is one usable verification key with the algorithms it is bound to. Its fields never
// change once the set holding it is built; withdrawn turns true, once, when a refreshed set
// no longer holds this key, which sends the tokens cached under it back to verification.
type jwk struct {
	kid       string
	hasKID    bool
	algs      alg
	rsa       *rsa.PublicKey
	ec        *ecdsa.PublicKey
	ed        ed25519.PublicKey
	withdrawn atomic.Bool
}

// same reports whether k and o are the same key: kid, algorithms and public key material.
func (k *jwk) same(o *jwk) bool {
	if k.kid != o.kid || k.hasKID != o.hasKID || k.algs != o.algs {
		return false
	}
	switch {
	case k.rsa != nil:
		return o.rsa != nil && k.rsa.Equal(o.rsa)
	case k.ec != nil:
		return o.ec != nil && k.ec.Equal(o.ec)
	default:
		return o.ed != nil && k.ed.Equal(o.ed)
	}
}

// keySet is a parsed JWK Set. Immutable once built; replaced whole on refresh.
type keySet struct {
	byKID map[string]*jwk
	all   []*jwk
	// skipped names keys that were ignored (another type, curve or algorithm; with
	// dropUnacceptable also unacceptable ones), for the log.
	skipped []string
	// dropped counts the unacceptable keys among skipped.
	dropped int
}

// adopt makes ks hold prev's key objects for the keys both sets hold, so that tokens
// cached under those keys stay cached, and marks prev's other keys withdrawn. Call it
// before ks is published; prev is the set ks replaces (nil for none).
func (ks *keySet) adopt(prev *keySet) {
	if prev == nil {
		return
	}
	kept := make(map[*jwk]bool, len(prev.all))
	for i, k := range ks.all {
		for _, o := range prev.all {
			if !kept[o] && !o.withdrawn.Load() && k.same(o) {
				ks.all[i], kept[o] = o, true
				if k.hasKID {
					ks.byKID[k.kid] = o
				}
				break
			}
		}
	}
	for _, o := range prev.all {
		if !kept[o] {
			o.withdrawn.Store(true)
		}
	}
}

// JWKSError is a JWK Set that was refused: it does not parse, holds no usable key, or holds
// an unacceptable key (see IssuerConfig.DropUnacceptableKeys). A refused set never replaces
// the last good one.
type JWKSError struct {
	Issuer string // the issuer whose set it is
	Source string // the JWKS file or URL
	// Line is the line of the offending key's object in the set's text (1-based), 0 when the
	// error is not about one key; Key is that key's index in "keys" (-1 when none) and KID its
	// kid.
	Line int
	Key  int
	KID  string
	Err  error
}

func (e *JWKSError) Error() string {
	src := e.Source
	if src == "" {
		src = "JWK Set"
	}
	switch {
	case e.Key >= 0 && e.Line > 0:
		return fmt.Sprintf("%s:%d: key %d (kid %.64q): %v", src, e.Line, e.Key, e.KID, e.Err)
	case e.Key >= 0:
		return fmt.Sprintf("%s: key %d (kid %.64q): %v", src, e.Key, e.KID, e.Err)
	}
	return fmt.Sprintf("%s: %v", src, e.Err)
}

func (e *JWKSError) Unwrap() error { return e.Err }

// notForUs is a well-formed key this package does not verify with: another key type, curve
// or algorithm, or none the issuer allows. It is skipped; it never makes a set unacceptable.
type notForUs string

func (e notForUs) Error() string { return string(e) }

// parseJWKS parses an RFC 7517 JWK Set and keeps the keys that can verify at least one
// algorithm of allowed. A well-formed key of another type, curve or algorithm is skipped
// (named in skipped). An unacceptable key (too small, for encryption, without "verify",
// symmetric, carrying private material, or malformed, such as an EC point off its curve)
// refuses the whole set, or with dropUnacceptable is skipped too. A set with no usable key,
// or two usable keys with the same kid, is refused. Errors are *JWKSError.
func parseJWKS(data []byte, allowed alg, dropUnacceptable bool) (*keySet, error) {
	doc, err := decodeObject(data)
	if err != nil {
		return nil, &JWKSError{Key: -1, Err: err}
	}
	raw, ok := doc["keys"].([]any)
	if !ok {
		return nil, &JWKSError{Key: -1, Err: errors.New(`"keys" missing or not an array`)}
	}
	ks := &keySet{byKID: make(map[string]*jwk)}
	for i, r := range raw {
		obj, ok := r.(map[string]any)
		if !ok {
			return nil, &JWKSError{Line: keyLine(data, i), Key: i, Err: errors.New("not an object")}
		}
		k, err := parseJWK(obj, allowed)
		if err != nil {
			var skip notForUs
			if !errors.As(err, &skip) {
				if !dropUnacceptable {
					return nil, &JWKSError{Line: keyLine(data, i), Key: i, KID: str(obj["kid"]), Err: err}
				}
				ks.dropped++
			}
			ks.skipped = append(ks.skipped, fmt.Sprintf("key %d (kid %.64q): %v", i, str(obj["kid"]), err))
			continue
		}
		if k.hasKID {
			if _, dup := ks.byKID[k.kid]; dup {
				return nil, &JWKSError{Line: keyLine(data, i), Key: i, KID: k.kid, Err: errors.New("duplicate kid")}
			}
			ks.byKID[k.kid] = k
		}
		ks.all = append(ks.all, k)
	}
	if len(ks.all) == 0 {
		return nil, &JWKSError{Key: -1, Err: fmt.Errorf("no usable key (%d skipped)", len(ks.skipped))}
	}
	return ks, nil
}

// keyLine returns the line (1-based) where element i of the set's "keys" array starts, or 0.
// data has already been decoded strictly, so its "keys" member is unique.
func keyLine(data []byte, i int) int {
	d := json.NewDecoder(bytes.NewReader(data))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	for d.More() {
		name, err := d.Token()
		if err != nil {
			return 0
		}
		if name != "keys" {
			var skip json.RawMessage
			if d.Decode(&skip) != nil {
				return 0
			}
			continue
		}
		if t, err := d.Token(); err != nil || t != json.Delim('[') {
			return 0
		}
		for n := 0; d.More(); n++ {
			off := int(d.InputOffset()) // just past '[' or the previous element
			if n == i {
				for off < len(data) && bytes.IndexByte([]byte(" \t\r\n,"), data[off]) >= 0 {
					off++
				}
				return 1 + bytes.Count(data[:off], []byte("\n"))
			}
			var skip json.RawMessage
			if d.Decode(&skip) != nil {
				return 0
			}
		}
		return 0
	}
	return 0
}

func str(v any) string { s, _ := v.(string); return s }

// parseJWK reads one key. A notForUs error means the key is well formed but of no use here;
// any other error makes the key unacceptable.
func parseJWK(m map[string]any, allowed alg) (*jwk, error) {
	k := &jwk{}
	if v, ok := m["kid"]; ok {
		if k.kid, ok = v.(string); !ok {
			return nil, errors.New("kid not a string")
		}
		k.hasKID = true
	}
	if v, ok := m["use"]; ok && v != "sig" {
		return nil, fmt.Errorf(`use %.20q is not "sig"`, str(v))
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
			return nil, notForUs(fmt.Sprintf("EC curve %.20q not supported", str(m["crv"])))
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
			return nil, notForUs(fmt.Sprintf("OKP curve %.20q not supported", str(m["crv"])))
		}
		x, err := fixedB64(m, "x", ed25519.PublicKeySize)
		if err != nil {
			return nil, err
		}
		k.ed, bound = ed25519.PublicKey(x), algEdDSA
	case "oct":
		return nil, errors.New("symmetric key (kty oct) in a public set")
	default:
		return nil, notForUs(fmt.Sprintf("kty %.20q not supported", str(m["kty"])))
	}
	if v, ok := m["alg"]; ok {
		name, _ := v.(string)
		if name == "Ed25519" { // RFC 9864 fully-specified name
			name = "EdDSA"
		}
		a := algByName(name)
		if a != 0 && bound&a == 0 {
			return nil, fmt.Errorf("alg %.20q contradicts the key type", name)
		}
		if bound &= a; bound == 0 {
			return nil, notForUs(fmt.Sprintf("alg %.20q not supported", name))
		}
	}
	if k.algs = bound & allowed; k.algs == 0 {
		return nil, notForUs("no algorithm the issuer allows")
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
