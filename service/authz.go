package service

import (
	"context"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Authorize decides whether a principal (given, or authenticated from credentials) may
// perform an action on a resource, and holds the plain scopes required_scopes names. The
// reason is for the calling service; http_status is what its client should see: a denial for
// someone else's object answers 404, the same as an object that does not exist.
func (s *Server) Authorize(ctx context.Context, req *wardenv1.AuthorizeRequest) (*wardenv1.AuthorizeResponse, error) {
	d := s.deps.Load()
	if d.Policy == nil {
		return nil, unimplemented("Authorize: no authorization policy is configured (config section authz)")
	}
	need := authz.ScopeRequirement{AnyOf: req.GetRequiredScopes().GetAnyOf(), AllOf: req.GetRequiredScopes().GetAllOf()}
	if err := need.Check(); err != nil {
		return nil, invalidArgument("required_scopes", err.Error())
	}
	if req.GetAction() == "" && need.IsZero() {
		return nil, invalidArgument("action", `required (unless required_scopes is set): the permission asked for, "resource:verb"`)
	}
	if req.GetAction() != "" && req.GetResource().GetType() == "" {
		return nil, invalidArgument("resource.type", "required")
	}
	var p authn.Principal
	resp := &wardenv1.AuthorizeResponse{}
	switch sub := req.GetSubject().(type) {
	case *wardenv1.AuthorizeRequest_Principal:
		if sub.Principal.GetSubject() == "" {
			return nil, invalidArgument("principal.subject", "required")
		}
		p = principalFromProto(sub.Principal)
	case *wardenv1.AuthorizeRequest_Credentials:
		if err := s.headers.check("credentials.headers", sub.Credentials.GetHeaders()); err != nil {
			return nil, err
		}
		var denied *wardenv1.AuthenticateResponse
		var err error
		p, denied, err = s.authenticate(ctx, d, sub.Credentials)
		if err != nil {
			return nil, err
		}
		if denied != nil {
			return &wardenv1.AuthorizeResponse{Reason: denied.Reason, HttpStatus: denied.HttpStatus}, nil
		}
		resp.Principal = principalToProto(p)
	default:
		// No principal: authz answers NoCredentials.
	}
	r := req.GetResource()
	res := authz.Resource{Type: r.GetType(), ID: r.GetId(), Owner: r.GetOwner(), Tenant: r.GetTenant(), Attributes: r.GetAttributes()}
	dec := d.Policy.AuthorizeScopes(p, need, req.GetAction(), res)
	resp.Allowed = dec.Allowed
	resp.Reason = authzReason(dec.Reason)
	resp.HttpStatus = int32(dec.Reason.Public().HTTPStatus())
	if !dec.Allowed {
		d.Auditor.Record(ctx, p, req.GetAction(), res, dec)
	}
	return resp, nil
}

func authzReason(r authz.Reason) wardenv1.DenyReason {
	switch r {
	case authz.OK:
		return wardenv1.DenyReason_DENY_REASON_UNSPECIFIED
	case authz.NoCredentials:
		return wardenv1.DenyReason_DENY_REASON_NO_CREDENTIALS
	case authz.MissingScope:
		return wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE
	case authz.MissingRole:
		return wardenv1.DenyReason_DENY_REASON_MISSING_ROLE
	case authz.NotOwner:
		return wardenv1.DenyReason_DENY_REASON_NOT_OWNER
	case authz.OtherTenant:
		return wardenv1.DenyReason_DENY_REASON_OTHER_TENANT
	case authz.NoRoute:
		return wardenv1.DenyReason_DENY_REASON_NO_ROUTE
	case authz.ConditionFailed:
		return wardenv1.DenyReason_DENY_REASON_CONDITION_FAILED
	case authz.MalformedResource:
		return wardenv1.DenyReason_DENY_REASON_MALFORMED_RESOURCE
	case authz.MalformedRequest:
		return wardenv1.DenyReason_DENY_REASON_MALFORMED_REQUEST
	case authz.CredentialNotAllowed:
		return wardenv1.DenyReason_DENY_REASON_CREDENTIAL_KIND_NOT_ALLOWED
	case authz.WebhookUnverified:
		return wardenv1.DenyReason_DENY_REASON_WEBHOOK_UNVERIFIED
	}
	return wardenv1.DenyReason_DENY_REASON_MISSING_ROLE
}
