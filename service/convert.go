package service

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// principalFromProto converts a principal sent by a caller. Warden's API trusts its callers
// (services inside the trust boundary) to pass back a principal that Warden itself produced.
func principalFromProto(p *wardenv1.Principal) authn.Principal {
	out := authn.Principal{
		Subject:      p.GetSubject(),
		Tenant:       p.GetTenant(),
		Roles:        p.GetRoles(),
		Method:       authn.Method(p.GetMethod()),
		CredentialID: p.GetCredentialId(),
		Tier:         p.GetTier(),
		Claims:       p.GetClaims(),
	}
	if p.GetScoped() {
		out.Scopes = p.GetScopes()
		if out.Scopes == nil {
			out.Scopes = []string{}
		}
	}
	if p.GetExpiresAt() != nil {
		out.ExpiresAt = p.GetExpiresAt().AsTime()
	}
	out.Env, _ = authn.ParseEnvironment(p.GetEnvironment()) // EnvUnspecified if absent
	return out
}

func principalToProto(p authn.Principal) *wardenv1.Principal {
	return principalInto(p, new(wardenv1.Principal))
}

// principalInto fills out, a zero message, with p and returns it.
func principalInto(p authn.Principal, out *wardenv1.Principal) *wardenv1.Principal {
	*out = wardenv1.Principal{
		Subject:      p.Subject,
		Tenant:       p.Tenant,
		Roles:        p.Roles,
		Scopes:       p.Scopes,
		Scoped:       p.Scopes != nil,
		Method:       wardenv1.AuthMethod(p.Method),
		CredentialId: p.CredentialID,
		Tier:         p.Tier,
		Claims:       p.Claims,
	}
	if !p.ExpiresAt.IsZero() {
		out.ExpiresAt = timestamppb.New(p.ExpiresAt)
	}
	if p.Env != authn.EnvUnspecified {
		out.Environment = p.Env.String()
	}
	return out
}
