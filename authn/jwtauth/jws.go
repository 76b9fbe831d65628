package jwtauth

import (
	"fmt"
	"strings"

	"github.com/wardenhq/warden/authn"
)

// alg is a JWS algorithm this package can verify, as a bit so that sets of them are cheap.
type alg uint8

const (
	algRS256 alg = 1 << iota
	algPS256
	algES256
	algEdDSA

	algAll = algRS256 | algPS256 | algES256 | algEdDSA
)

// algByName maps the exact, case-sensitive JWS names (RFC 7518, RFC 8037).
func algByName(name string) alg {
	switch name {
	case "RS256":
		return algRS256
	case "PS256":
		return algPS256
	case "ES256":
		return algES256
	case "EdDSA":
		return algEdDSA
	}
	return 0
}

func (a alg) String() string {
	switch a {
	case algRS256:
		return "RS256"
	case algPS256:
		return "PS256"
	case algES256:
		return "ES256"
	case algEdDSA:
		return "EdDSA"
	}
	return "unsupported"
}

// failure is why a token was refused: the reason for the caller and a detail for the debug
// log. A detail never contains the token or a signature.
type failure struct {
	reason authn.Reason
	detail string
}

func fail(r authn.Reason, format string, args ...any) *failure {
	return &failure{reason: r, detail: fmt.Sprintf(format, args...)}
}

// jws is a parsed, not yet verified, compact JWS.
type jws struct {
	alg    alg
	kid    string
	hasKID bool
	typ    string
	claims map[string]any
	// signingInput is the ASCII "header.payload" the signature covers.
	signingInput string
	sig          []byte
}

// parseJWS parses a compact JWS strictly (see the package comment). It checks structure and
// header only; claims are decoded but not validated, and the signature is not checked.
func parseJWS(token string) (jws, *failure) {
	var t jws
	h, rest, ok := strings.Cut(token, ".")
	if !ok {
		return t, fail(authn.Malformed, "not a compact JWS")
	}
	p, s, ok := strings.Cut(rest, ".")
	if !ok || strings.IndexByte(s, '.') >= 0 {
		return t, fail(authn.Malformed, "not a compact JWS: want 3 segments")
	}
	if h == "" || p == "" || s == "" {
		return t, fail(authn.Malformed, "empty segment")
	}
	hb, err := decodeB64(h)
	if err != nil {
		return t, fail(authn.Malformed, "header: %v", err)
	}
	header, err := decodeObject(hb)
	if err != nil {
		return t, fail(authn.Malformed, "header: %v", err)
	}
	if f := t.readHeader(header); f != nil {
		return t, f
	}
	pb, err := decodeB64(p)
	if err != nil {
		return t, fail(authn.Malformed, "payload: %v", err)
	}
	if t.claims, err = decodeObject(pb); err != nil {
		return t, fail(authn.Malformed, "claims: %v", err)
	}
	if t.sig, err = decodeB64(s); err != nil {
		return t, fail(authn.Malformed, "signature: %v", err)
	}
	t.signingInput = token[:len(h)+1+len(p)]
	return t, nil
}

func (t *jws) readHeader(h map[string]any) *failure {
	name, ok := h["alg"].(string)
	if !ok {
		return fail(authn.Malformed, "header: alg missing or not a string")
	}
	if t.alg = algByName(name); t.alg == 0 {
		// "none" in any casing, HS*, RS384, … all end here.
		return fail(authn.UnsupportedAlgorithm, "alg %.20q not supported", name)
	}
	for _, k := range [...]string{"jku", "x5u", "jwk"} {
		if _, ok := h[k]; ok {
			return fail(authn.Malformed, "header %s is never followed", k)
		}
	}
	if _, ok := h["crit"]; ok {
		return fail(authn.Malformed, "header crit: no extension is understood")
	}
	if _, ok := h["enc"]; ok {
		return fail(authn.Malformed, "JWE is not supported")
	}
	if v, ok := h["b64"]; ok && v != true {
		return fail(authn.Malformed, "header b64 without crit")
	}
	if v, ok := h["kid"]; ok {
		if t.kid, ok = v.(string); !ok {
			return fail(authn.Malformed, "header: kid not a string")
		}
		t.hasKID = true
	}
	if v, ok := h["typ"]; ok {
		if t.typ, ok = v.(string); !ok {
			return fail(authn.Malformed, "header: typ not a string")
		}
	}
	return nil
}
