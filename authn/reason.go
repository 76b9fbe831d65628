package authn

import "context"

// Reason says why authentication failed, or OK when it succeeded. It is for audit logs and
// metrics: callers show clients only a generic message ("unauthenticated"), never the
// detailed reason. The zero value is OK.
type Reason uint8

const (
	// OK: the credential was verified and the returned Principal is valid.
	OK Reason = iota
	// NoCredentials: the request carries no credential of an enabled kind.
	NoCredentials
	// Malformed: a credential is present but cannot be parsed (bad format, bad checksum,
	// duplicate or ambiguous headers, a key of the wrong environment).
	Malformed
	// Unknown: the credential is well formed but no such key, token or principal exists.
	Unknown
	// Expired: the credential's lifetime is over.
	Expired
	// Revoked: the credential was revoked (or its rotation grace period has ended).
	Revoked
	// BadSignature: the secret or signature does not match.
	BadSignature
	// WrongAudience: the token is not meant for this service.
	WrongAudience
	// WrongIssuer: the token was issued by an issuer that is not trusted.
	WrongIssuer
	// NotYetValid: the credential's validity starts in the future (nbf, NotBefore).
	NotYetValid
	// UnsupportedAlgorithm: the token is signed with an algorithm that is not allowed.
	UnsupportedAlgorithm
	// NotAllowed: the mTLS certificate does not chain to a trusted CA, or a gateway's
	// principal is not trusted (the caller is not identified), or an OAuth2 token's client
	// is not accepted.
	NotAllowed
	// Inactive: OAuth2 introspection answered active=false.
	Inactive
	// Unavailable: a backend (store, introspection endpoint, JWKS) failed, so no decision
	// could be made. Maps to the gRPC code UNAVAILABLE, not to a denial.
	Unavailable
	// WrongTokenType: the token is of a type not accepted here (an OAuth2 refresh token
	// offered as an access token).
	WrongTokenType
	// NotListed: the mTLS principal is authentic (the caller is identified) but not on the
	// allow-list. Unlike the other reasons it is a 403, not a 401: authenticating again
	// would not help.
	NotListed

	numReasons
)

var reasonNames = [numReasons]string{
	"ok", "no_credentials", "malformed", "unknown", "expired", "revoked", "bad_signature",
	"wrong_audience", "wrong_issuer", "not_yet_valid", "unsupported_algorithm", "not_allowed",
	"inactive", "unavailable", "wrong_token_type", "not_listed",
}

// String returns the reason in snake_case, stable for metric labels and audit logs.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// TokenVerifier verifies a bearer token of one kind (JWT in authn/jwtauth, OAuth2 opaque
// tokens by introspection) and returns the principal it stands for. On failure the
// Principal is the zero value and the Reason says why; Unavailable means a backend failed
// and no decision was made. Implementations must be safe for concurrent use and must honour
// ctx's deadline for any network call.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (Principal, Reason)
}
