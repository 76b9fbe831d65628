package authn

import (
	"context"
	"errors"
)

// Config configures an Authenticator. A nil method is disabled; at least one must be set.
type Config struct {
	// APIKeys authenticates API keys (typed, "authorization: ApiKey", "authorization:
	// Bearer sk-…", or the API key header).
	APIKeys *APIKeys
	// JWT verifies bearer tokens shaped like a JWT (authn/jwtauth). When nil, JWT-shaped
	// tokens go to OAuth2 introspection if that is set.
	JWT TokenVerifier
	// OAuth2 verifies opaque bearer tokens (an *Introspector).
	OAuth2 TokenVerifier
	// MTLS authenticates peer certificates and gateway-verified principals.
	MTLS *MTLS
	// Extract says where credentials are found in headers. Zero value: the defaults.
	Extract ExtractConfig
	// PreferPeer decides which credential authenticates when a request carries both a
	// bearer-style credential (API key, JWT, OAuth2 token) and a peer identity (mTLS). By
	// default (false) the bearer credential decides: in a mesh every hop has a peer
	// certificate, and the end caller's credential is the one that matters. With
	// PreferPeer the peer identity decides. The other credential is not checked.
	PreferPeer bool
}

// Authenticator turns Credentials into a Principal by dispatching to the enabled methods.
//
// Precedence: at most one bearer-style credential may be present (typed fields and headers
// together; the same API key given twice counts once): more is Malformed. Between a bearer
// credential and a peer identity, Config.PreferPeer decides. Among peer identities, a chain
// verified by Warden's listener comes first, then a gateway's PEM, then a gateway's
// principal. The chosen credential's result is final: a failed credential does not fall
// back to another one. Credentials of a disabled kind are ignored; if nothing usable is
// left the result is Malformed (something was presented) or NoCredentials.
//
// Build it with NewAuthenticator; it is immutable and safe for concurrent use.
type Authenticator struct {
	cfg Config
}

// NewAuthenticator checks cfg and returns an Authenticator.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	if cfg.APIKeys == nil && cfg.JWT == nil && cfg.OAuth2 == nil && cfg.MTLS == nil {
		return nil, errors.New("authn: no authentication method enabled")
	}
	return &Authenticator{cfg: cfg}, nil
}

// Authenticate returns the caller's principal or why it could not be established. c is not
// modified. Unavailable means a backend failed and no decision was made.
func (a *Authenticator) Authenticate(ctx context.Context, c *Credentials) (Principal, Reason) {
	bearer, r := a.bearer(c)
	if r != OK {
		return Principal{}, r
	}
	hasPeer := len(c.PeerCertificates) > 0 || c.PeerCertificatePEM != "" || c.PeerPrincipal != ""
	presented := bearer.Kind != TokenNone || hasPeer
	usePeer := hasPeer && a.cfg.MTLS != nil
	useBearer := bearer.Kind != TokenNone && a.enabled(bearer.Kind)
	switch {
	case useBearer && (!usePeer || !a.cfg.PreferPeer):
		return a.verifyBearer(ctx, bearer)
	case usePeer:
		return a.verifyPeer(c)
	case presented:
		return Principal{}, Malformed
	}
	return Principal{}, NoCredentials
}

func (a *Authenticator) bearer(c *Credentials) (Extracted, Reason) {
	var typed Extracted
	switch {
	case c.APIKey != "" && c.BearerToken != "":
		return Extracted{}, Malformed
	case c.APIKey != "":
		typed = Extracted{Kind: TokenAPIKey, Value: c.APIKey}
	case c.BearerToken != "":
		typed = a.classify(Extracted{Kind: ClassifyToken(c.BearerToken), Value: c.BearerToken})
	}
	if c.Headers == nil {
		return typed, OK
	}
	fromHeaders, r := a.cfg.Extract.Extract(c.Headers)
	fromHeaders = a.classify(fromHeaders)
	switch {
	case r == NoCredentials:
		return typed, OK
	case r != OK:
		return Extracted{}, r
	case typed.Kind != TokenNone && typed != fromHeaders:
		return Extracted{}, Malformed
	}
	return fromHeaders, OK
}

// classify makes a bearer token with an imported key format's prefix an API key.
func (a *Authenticator) classify(x Extracted) Extracted {
	if (x.Kind == TokenJWT || x.Kind == TokenOpaque) && a.cfg.APIKeys != nil && a.cfg.APIKeys.ClaimsToken(x.Value) {
		x.Kind = TokenAPIKey
	}
	return x
}

func (a *Authenticator) enabled(k TokenKind) bool {
	switch k {
	case TokenAPIKey:
		return a.cfg.APIKeys != nil
	case TokenJWT:
		return a.cfg.JWT != nil || a.cfg.OAuth2 != nil
	case TokenOpaque:
		return a.cfg.OAuth2 != nil
	}
	return false
}

func (a *Authenticator) verifyBearer(ctx context.Context, b Extracted) (Principal, Reason) {
	switch {
	case b.Kind == TokenAPIKey:
		return a.cfg.APIKeys.Authenticate(ctx, b.Value)
	case b.Kind == TokenJWT && a.cfg.JWT != nil:
		return a.cfg.JWT.Verify(ctx, b.Value)
	}
	return a.cfg.OAuth2.Verify(ctx, b.Value)
}

func (a *Authenticator) verifyPeer(c *Credentials) (Principal, Reason) {
	switch {
	case len(c.PeerCertificates) > 0:
		return a.cfg.MTLS.FromChain(c.PeerCertificates)
	case c.PeerCertificatePEM != "":
		return a.cfg.MTLS.FromPEM(c.PeerCertificatePEM)
	}
	return a.cfg.MTLS.FromGatewayPrincipal(c.PeerPrincipal)
}
