package authn

import (
	"crypto/x509"
	"strings"
)

// Credentials is everything a caller may present, as plain Go values. Typed fields are
// filled by callers that already know what they have; Headers carries raw HTTP headers as a
// gateway forwards them, and is read by Extract. Every field is optional.
type Credentials struct {
	// APIKey is an API key given as such.
	APIKey string
	// BearerToken is a JWT or an opaque OAuth2 access token (ClassifyToken tells which).
	BearerToken string
	// PeerCertificates is a client certificate chain already verified by Warden's own TLS
	// listener (leaf first).
	PeerCertificates []*x509.Certificate
	// PeerCertificatePEM is a URL-encoded PEM chain (leaf first), as Envoy's ext_authz
	// source.certificate carries it. It is verified against MTLSConfig.GatewayRoots.
	PeerCertificatePEM string
	// PeerPrincipal is a principal a trusted gateway already verified (Envoy's
	// source.principal, e.g. a SPIFFE id). Used only if MTLSConfig.TrustGatewayPrincipal.
	PeerPrincipal string
	// Headers are HTTP headers with lower-case names, each with all its values in order (a
	// gRPC metadata.MD converts as is). Query strings are never read.
	Headers map[string][]string
}

// TokenKind is what a bearer credential looks like.
type TokenKind uint8

const (
	TokenNone   TokenKind = iota
	TokenAPIKey           // sk-live-… or sk-test-…
	TokenJWT              // three dot-separated base64url parts
	TokenOpaque           // anything else: an OAuth2 access token
)

var tokenKindNames = [...]string{"none", "api_key", "jwt", "opaque"}

func (k TokenKind) String() string {
	if int(k) < len(tokenKindNames) {
		return tokenKindNames[k]
	}
	return "invalid"
}

// ClassifyToken says what a bearer token looks like: an API key if it has an API key prefix,
// else a JWT if it is three dot-separated non-empty base64url parts (the third may be
// empty, as in an unsecured JWT, which the verifier refuses), else opaque.
func ClassifyToken(tok string) TokenKind {
	if tok == "" {
		return TokenNone
	}
	if LooksLikeAPIKey(tok) {
		return TokenAPIKey
	}
	part, dots := 0, 0
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '.':
			if part == 0 && dots < 2 {
				return TokenOpaque
			}
			dots++
			part = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			part++
		default:
			return TokenOpaque
		}
	}
	if dots == 2 {
		return TokenJWT
	}
	return TokenOpaque
}

// DefaultAPIKeyHeader is the header that carries a bare API key when ExtractConfig does
// not name another.
const DefaultAPIKeyHeader = "x-api-key"

// ExtractConfig says where credentials are found in headers. The zero value uses the
// defaults.
type ExtractConfig struct {
	// APIKeyHeader is the header that carries a bare API key, lower case. Default
	// DefaultAPIKeyHeader.
	APIKeyHeader string `yaml:"api_key_header"`
	// MaxCredentialBytes caps the length of a credential. Default 8192.
	MaxCredentialBytes int `yaml:"max_credential_bytes"`
}

// KeyHeader is the header that carries a bare API key: APIKeyHeader, or its default.
func (c ExtractConfig) KeyHeader() string {
	if c.APIKeyHeader == "" {
		return DefaultAPIKeyHeader
	}
	return c.APIKeyHeader
}

// Extracted is the one bearer-style credential found in headers.
type Extracted struct {
	Kind  TokenKind
	Value string
}

// Extract finds the bearer-style credential in h:
//
//   - "authorization: Bearer <token>": the token, classified by ClassifyToken;
//   - "authorization: ApiKey <key>": an API key;
//   - "<APIKeyHeader>: <key>": an API key.
//
// Parsing is strict: scheme names are case-insensitive, exactly one space separates scheme
// and credential, the credential is RFC 7235 token68 characters, and each header appears
// once. Several credentials are refused (Malformed) unless they are the same API key in both
// headers; another scheme (Basic, Digest…) is Malformed too. No credential is NoCredentials.
func (c ExtractConfig) Extract(h map[string][]string) (Extracted, Reason) {
	apiHeader, max := c.KeyHeader(), c.MaxCredentialBytes
	if max <= 0 {
		max = 8192
	}
	var fromAuth, fromKey Extracted
	if vs, ok := h["authorization"]; ok {
		if len(vs) != 1 {
			return Extracted{}, Malformed
		}
		scheme, cred, ok := strings.Cut(vs[0], " ")
		if !ok || !validToken68(cred, max) {
			return Extracted{}, Malformed
		}
		switch {
		case strings.EqualFold(scheme, "bearer"):
			fromAuth = Extracted{Kind: ClassifyToken(cred), Value: cred}
		case strings.EqualFold(scheme, "apikey"):
			fromAuth = Extracted{Kind: TokenAPIKey, Value: cred}
		default:
			return Extracted{}, Malformed
		}
	}
	if vs, ok := h[apiHeader]; ok {
		if len(vs) != 1 || !validToken68(vs[0], max) {
			return Extracted{}, Malformed
		}
		fromKey = Extracted{Kind: TokenAPIKey, Value: vs[0]}
	}
	switch {
	case fromAuth.Kind == TokenNone && fromKey.Kind == TokenNone:
		return Extracted{}, NoCredentials
	case fromKey.Kind == TokenNone:
		return fromAuth, OK
	case fromAuth.Kind == TokenNone || fromAuth == fromKey:
		return fromKey, OK
	}
	return Extracted{}, Malformed
}

// token68Chars are the bytes of a token68 before its padding: ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/".
var token68Chars = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// validToken68 reports whether s is a non-empty RFC 7235 token68 of at most max bytes:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func validToken68(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	i := 0
	for i < len(s) && token68Chars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
