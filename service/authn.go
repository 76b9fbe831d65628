package service

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Authn holds authentication for one config: the dispatcher over the enabled credential
// kinds, and what AdminService needs besides it.
type Authn struct {
	Authenticator *authn.Authenticator
	// APIKeyHeader is the header that carries a bare API key (lower case). Default
	// authn.DefaultAPIKeyHeader.
	APIKeyHeader string
	// APIKeys manages keys for AdminService; nil when API keys are not enabled.
	APIKeys *authn.APIKeys
	// EphemeralKeys says that APIKeys keeps the keys AdminService creates and imports in
	// memory only (lost on restart, unknown to other replicas): CreateApiKey and
	// ImportApiKey answer ephemeral, so that wardenctl can warn.
	EphemeralKeys bool
	// Revoker revokes JWTs by jti (AdminService.RevokeToken); nil when no JWT issuer.
	Revoker interface {
		Revoke(ctx context.Context, jti string, exp time.Time) error
	}
	// AdminRoles may call AdminService.
	AdminRoles []string
}

// Authenticate turns credentials into a principal. A failure is an answer (authenticated
// false, a reason for the calling service, 401 and WWW-Authenticate for its client); a
// backend that cannot answer is UNAVAILABLE.
func (s *Server) Authenticate(ctx context.Context, req *wardenv1.AuthenticateRequest) (resp *wardenv1.AuthenticateResponse, err error) {
	ctx, sp := s.start(ctx, spanAuthenticate) // spans only when sampled: see span
	if sp.on() {
		defer func() {
			if resp.GetAuthenticated() {
				sp.set(attrMethod.String(resp.GetPrincipal().GetMethod().String()))
			}
			sp.end(resp.GetAuthenticated(), resp.GetReason(), err)
		}()
	}
	if err := s.headers.check("credentials.headers", req.GetCredentials().GetHeaders()); err != nil {
		return nil, err
	}
	d := s.deps.Load()
	p, denied, err := s.authenticate(ctx, d, req.GetCredentials())
	if err != nil {
		return nil, err
	}
	if denied != nil {
		return denied, nil
	}
	return &wardenv1.AuthenticateResponse{Authenticated: true, Principal: principalToProto(p)}, nil
}

// authenticate turns credentials into a principal. A nil denied and nil error means
// authenticated; a non-nil denied is the answer to send; an error means Warden could not
// decide. Precedence: an explicit API key or bearer token (typed fields, else the
// Authorization or API-key header), then the peer certificate, then the gateway's verified
// peer principal.
func (s *Server) authenticate(ctx context.Context, d *Deps, c *wardenv1.Credentials) (authn.Principal, *wardenv1.AuthenticateResponse, error) {
	a := d.Authn
	if a == nil {
		return authn.Principal{}, nil, unimplemented("authentication is not configured (config section authn)")
	}
	p, reason := a.authenticate(ctx, c)
	if reason == authn.OK && !p.Passable() {
		// Authentic, but naming values the identity headers cannot carry unambiguously (see
		// Principal.Passable): refused, so that no upstream reads a role it was not given.
		p, reason = authn.Principal{}, authn.Malformed
		s.audit.LogAttrs(ctx, slog.LevelWarn, "credential names an identity the identity headers cannot carry (a control character, a comma in a role, or a scope that is not an RFC 6749 scope-token)", attrRPC("Authenticate"))
	}
	switch reason {
	case authn.OK:
		return p, nil, nil
	case authn.Unavailable:
		if err := fromContext(ctx, ctx.Err()); err != nil {
			return authn.Principal{}, nil, err
		}
		return authn.Principal{}, nil, unavailable("an authentication backend")
	}
	s.audit.LogAttrs(ctx, slog.LevelInfo, "authentication failed", attrRPC("Authenticate"), attrStr("reason", reason.String()))
	if reason == authn.NotListed {
		// Identified (an authentic certificate) but not allowed: 403, as authenticating
		// again would not help.
		return authn.Principal{}, &wardenv1.AuthenticateResponse{Reason: authnReason(reason), HttpStatus: 403}, nil
	}
	return authn.Principal{}, &wardenv1.AuthenticateResponse{
		Reason:          authnReason(reason),
		HttpStatus:      401,
		ResponseHeaders: []*wardenv1.Header{{Name: "WWW-Authenticate", Value: wwwAuthenticate(reason != authn.NoCredentials)}},
	}, nil
}

func (a *Authn) authenticate(ctx context.Context, c *wardenv1.Credentials) (authn.Principal, authn.Reason) {
	creds := authn.Credentials{
		APIKey:             c.GetApiKey(),
		BearerToken:        c.GetBearerToken(),
		PeerCertificatePEM: c.GetPeerCertificate(),
		PeerPrincipal:      c.GetPeerPrincipal(),
	}
	// Only the headers that can carry a credential are passed on: converting every header
	// of every request would cost more than the authentication itself.
	if hs := c.GetHeaders(); len(hs) > 0 {
		keyHeader := a.apiKeyHeader()
		auth, hasAuth := hs["authorization"]
		key, hasKey := hs[keyHeader]
		if hasAuth || hasKey {
			// A pooled map: the authenticator reads the headers only during the call.
			hc := headerCredsPool.Get().(*headerCreds)
			defer hc.release()
			if hasAuth {
				hc.vals[0] = auth
				hc.m["authorization"] = hc.vals[0:1:1]
			}
			if hasKey {
				hc.vals[1] = key
				hc.m[keyHeader] = hc.vals[1:2:2]
			}
			creds.Headers = hc.m
		}
	}
	return a.Authenticator.Authenticate(ctx, &creds)
}

// headerCreds is the credential headers of one authentication, reused through a pool.
type headerCreds struct {
	m    map[string][]string
	vals [2]string
}

var headerCredsPool = sync.Pool{New: func() any { return &headerCreds{m: make(map[string][]string, 2)} }}

func (hc *headerCreds) release() {
	clear(hc.m)
	hc.vals = [2]string{}
	headerCredsPool.Put(hc)
}

func authnReason(r authn.Reason) wardenv1.DenyReason {
	switch r {
	case authn.NoCredentials:
		return wardenv1.DenyReason_DENY_REASON_NO_CREDENTIALS
	case authn.Malformed:
		return wardenv1.DenyReason_DENY_REASON_MALFORMED_CREDENTIALS
	case authn.Unknown:
		return wardenv1.DenyReason_DENY_REASON_UNKNOWN_CREDENTIALS
	case authn.Expired:
		return wardenv1.DenyReason_DENY_REASON_EXPIRED
	case authn.Revoked:
		return wardenv1.DenyReason_DENY_REASON_REVOKED
	case authn.BadSignature:
		return wardenv1.DenyReason_DENY_REASON_BAD_SIGNATURE
	case authn.WrongAudience:
		return wardenv1.DenyReason_DENY_REASON_WRONG_AUDIENCE
	case authn.WrongIssuer:
		return wardenv1.DenyReason_DENY_REASON_WRONG_ISSUER
	case authn.NotYetValid:
		return wardenv1.DenyReason_DENY_REASON_NOT_YET_VALID
	case authn.UnsupportedAlgorithm:
		return wardenv1.DenyReason_DENY_REASON_UNSUPPORTED_ALGORITHM
	case authn.NotAllowed, authn.NotListed:
		return wardenv1.DenyReason_DENY_REASON_PRINCIPAL_NOT_ALLOWED
	case authn.Inactive:
		return wardenv1.DenyReason_DENY_REASON_INACTIVE_TOKEN
	}
	return wardenv1.DenyReason_DENY_REASON_UNKNOWN_CREDENTIALS
}
