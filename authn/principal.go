// Package authn decides who is calling: it turns credentials (API keys, mTLS certificates,
// OAuth2 access tokens, and through authn/jwtauth JWT bearer tokens) into a Principal, and
// verifies webhook signatures (authn/webhook).
//
// It knows nothing of gRPC, protobuf or Envoy: it takes plain Go values (header values, raw
// bytes, x509 certificates) and returns plain Go values, so it can be tested and benchmarked
// alone. Stores it needs (API keys, revocations) are small interfaces that the caller wires to
// Redis or to memory.
package authn

import "time"

// Method is how a principal proved who it is.
type Method uint8

const (
	MethodUnspecified Method = iota
	MethodAPIKey
	MethodJWT
	MethodMTLS
	MethodOAuth2
)

var methodNames = [...]string{"unspecified", "api_key", "jwt", "mtls", "oauth2"}

func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return "unknown"
}

// Principal is an authenticated caller. It is a plain value: authorization reads it, nothing
// mutates it after authentication. Slices are shared and must be treated as read-only.
type Principal struct {
	// Subject identifies the caller (user id, service name, SPIFFE id). Ownership rules
	// compare resource owners with it.
	Subject string
	// Tenant isolates callers: a principal reaches only its own tenant's resources unless a
	// role allows more. Empty means no tenant.
	Tenant string
	// Roles grant permissions; Scopes narrow them. Nil Scopes means "not narrowed" (the
	// credential carries no scope restriction); an empty non-nil slice narrows to nothing.
	Roles  []string
	Scopes []string
	// Method is the kind of credential that authenticated the caller.
	Method Method
	// CredentialID is the API key id, the JWT jti, the certificate serial or the OAuth2
	// token's digest prefix: enough to find it again, never a secret.
	CredentialID string
	// Env is an API key's environment (live or test); EnvUnspecified for other methods.
	Env Environment
	// Tier selects rate limits (e.g. "free", "paid"). Empty means the default tier.
	Tier string
	// ExpiresAt is when the credential stops being valid; zero means it does not expire.
	ExpiresAt time.Time
	// Claims holds selected extra attributes (mapped JWT claims, key labels) for
	// authorization conditions and identity headers. Read-only.
	Claims map[string]string
}

// Passable reports whether p can be passed on to an upstream unambiguously in the identity
// headers (package idheader): no value holds a control character (CR and LF would end a
// header line), no role holds a comma (the roles header is a comma-separated list), and every
// scope is an RFC 6749 §3.3 scope-token (the scopes header is space-separated). A principal
// that is not would let its credential's issuer name a role or a scope it was not given to
// the upstream that splits the header, e.g. the role "user,admin": the service refuses its
// credential as Malformed. It does not allocate.
func (p Principal) Passable() bool {
	if !headerText(p.Subject, false) || !headerText(p.Tenant, false) || !headerText(p.CredentialID, false) || !headerText(p.Tier, false) {
		return false
	}
	for _, r := range p.Roles {
		if r == "" || !headerText(r, true) {
			return false
		}
	}
	for _, s := range p.Scopes {
		if !scopeToken(s) {
			return false
		}
	}
	return true
}

// headerText reports whether s holds no control character (C0, DEL) and, if noComma, no comma.
func headerText(s string, noComma bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || noComma && c == ',' {
			return false
		}
	}
	return true
}

// scopeToken reports whether s is an RFC 6749 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func scopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
