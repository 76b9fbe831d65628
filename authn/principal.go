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
