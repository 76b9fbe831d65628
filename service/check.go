package service

import (
	"context"
	"log/slog"
	"strings"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/limiter"
)

// Identity headers set on the upstream request when Check allows. They always replace what
// the client sent: an empty value is sent as a removal, so a client cannot smuggle its own.
const (
	HeaderSubject      = "x-warden-subject"
	HeaderTenant       = "x-warden-tenant"
	HeaderRoles        = "x-warden-roles"
	HeaderScopes       = "x-warden-scopes"
	HeaderMethod       = "x-warden-auth-method"
	HeaderCredentialID = "x-warden-credential-id"
	HeaderTier         = "x-warden-tier"
)

const maxPath = 8192

// Check authenticates, authorizes and rate-limits in one round trip, in that order, stopping
// at the first denial. The request is either an HTTP request matched against the route table
// (http, or grpc_method as POST /pkg.Service/Method), or an explicit action on a resource.
func (s *Server) Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	d := s.deps.Load()
	var (
		ps     authz.Params
		route  *authz.Route
		method string
		path   string
		http   = req.GetHttp()
	)
	if http != nil || req.GetGrpcMethod() != "" {
		if d.Policy == nil {
			return nil, unimplemented("Check: no route table is configured (config section authz.routes)")
		}
		method, path = http.GetMethod(), http.GetPath()
		if req.GetGrpcMethod() != "" && path == "" {
			method, path = "POST", req.GetGrpcMethod()
		}
		if method == "" {
			return nil, invalidArgument("http.method", "required")
		}
		if path == "" || path[0] != '/' || len(path) > maxPath {
			return nil, invalidArgument("http.path", "required: an absolute path of at most 8192 bytes")
		}
		if i := strings.IndexByte(path, '?'); i >= 0 {
			path = path[:i]
		}
		var reason authz.Reason
		route, reason = d.Policy.Match(method, path, &ps)
		if reason == authz.MalformedRequest {
			dec := authz.Decision{Reason: authz.MalformedRequest}
			d.Auditor.RecordCheck(ctx, authn.Principal{}, method, path, &ps, dec)
			return deny(wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, dec.Reason), nil
		}
	} else if req.GetAction() != "" && req.GetResource().GetType() == "" {
		return nil, invalidArgument("resource.type", "required with action")
	}

	resp := &wardenv1.CheckResponse{}
	if route != nil {
		resp.Route = route.Name
	}
	var p authn.Principal
	switch {
	case route != nil && route.Webhook != "":
		if denied, err := s.checkWebhook(ctx, d, route, http, resp); err != nil || denied {
			return resp, err
		}
	case route != nil && route.Public:
		// No credentials needed.
	default:
		creds := req.GetCredentials()
		if creds == nil && http != nil {
			creds = &wardenv1.Credentials{Headers: http.GetHeaders()}
		}
		var denied *wardenv1.AuthenticateResponse
		var err error
		p, denied, err = s.authenticate(ctx, d, creds)
		if err != nil {
			return nil, err
		}
		if denied != nil {
			resp.Stage = wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE
			resp.Reason, resp.HttpStatus, resp.ResponseHeaders = denied.Reason, denied.HttpStatus, denied.ResponseHeaders
			return resp, nil
		}
		resp.Principal = principalToProto(p)
		var dec authz.Decision
		switch {
		case path != "":
			dec = d.Policy.Check(p, method, path, &ps)
		case req.GetAction() != "":
			if d.Policy == nil {
				return nil, unimplemented("Check: no authorization policy is configured (config section authz)")
			}
			r := req.GetResource()
			res := authz.Resource{Type: r.GetType(), ID: r.GetId(), Owner: r.GetOwner(), Tenant: r.GetTenant(), Attributes: r.GetAttributes()}
			dec = d.Policy.Authorize(p, req.GetAction(), res)
			if !dec.Allowed {
				d.Auditor.Record(ctx, p, req.GetAction(), res, dec)
			}
		default:
			dec = authz.Decision{Allowed: true}
		}
		if !dec.Allowed {
			if path != "" {
				d.Auditor.RecordCheck(ctx, p, method, path, &ps, dec)
			}
			r := deny(wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, dec.Reason)
			r.Principal, r.Route = resp.Principal, resp.Route
			return r, nil
		}
	}

	if err := s.checkLimits(ctx, d, req, route, &ps, p, http, resp); err != nil {
		return nil, err
	}
	if resp.Stage != wardenv1.CheckStage_CHECK_STAGE_UNSPECIFIED {
		return resp, nil
	}
	resp.Allowed = true
	resp.HttpStatus = 200
	identityHeaders(p, route, resp)
	return resp, nil
}

// deny builds an authorization denial (the caller writes the audit record).
func deny(stage wardenv1.CheckStage, reason authz.Reason) *wardenv1.CheckResponse {
	pub := reason.Public()
	r := &wardenv1.CheckResponse{Stage: stage, Reason: authzReason(reason), HttpStatus: int32(pub.HTTPStatus())}
	if pub == authz.PublicUnauthenticated {
		r.ResponseHeaders = []*wardenv1.Header{{Name: "WWW-Authenticate", Value: wwwAuthenticate(false)}}
	}
	return r
}

func wwwAuthenticate(invalid bool) string {
	if invalid {
		return `Bearer realm="warden", error="invalid_token"`
	}
	return `Bearer realm="warden"`
}

// checkWebhook verifies a webhook route's signature over the body the gateway forwarded. A
// duplicate delivery is denied with 200, so the gateway acknowledges it to the sender
// without forwarding it again.
func (s *Server) checkWebhook(ctx context.Context, d *Deps, route *authz.Route, http *wardenv1.HttpRequest, resp *wardenv1.CheckResponse) (denied bool, err error) {
	if d.Webhooks == nil {
		return false, unimplemented("Check: route " + route.Name + " verifies webhooks, but no webhook sources are configured")
	}
	r := d.Webhooks.Verify(ctx, route.Webhook, webhook.Map(http.GetHeaders()), http.GetBody())
	if r.Valid {
		return false, nil
	}
	if r.Reason == webhook.Unavailable {
		return true, unavailable("the webhook replay store")
	}
	resp.Stage = wardenv1.CheckStage_CHECK_STAGE_WEBHOOK
	resp.Reason = webhookReason(r.Reason)
	resp.HttpStatus = 401
	if r.Duplicate {
		resp.HttpStatus = 200
	}
	s.audit.LogAttrs(ctx, slog.LevelInfo, "webhook denied", attrRPC("Check"), attrStr("route", route.Name),
		attrStr("source", route.Webhook), attrStr("reason", r.Reason.String()), attrStr("event_id", r.EventID))
	return true, nil
}

// checkLimits applies the route's rate limits and the request's own descriptors, one
// limiter call per domain (all or nothing within a domain).
func (s *Server) checkLimits(ctx context.Context, d *Deps, req *wardenv1.CheckRequest, route *authz.Route, ps *authz.Params, p authn.Principal, http *wardenv1.HttpRequest, resp *wardenv1.CheckResponse) error {
	var routeLimits []authz.RateLimitSpec
	if route != nil {
		routeLimits = route.RateLimits
	}
	if len(routeLimits) == 0 && req.GetRateLimitDomain() == "" {
		return nil
	}
	if d.Limiter == nil {
		return unimplemented("Check: rate limits are asked for, but none are configured (config section rate_limit)")
	}
	sc := rlPool.Get().(*rlScratch)
	defer rlPool.Put(sc)

	// Domains in first-seen order: the route's, then the request's.
	var domains [4]string
	doms := domains[:0]
	for _, spec := range routeLimits {
		if !contains(doms, spec.Domain) {
			doms = append(doms, spec.Domain)
		}
	}
	if dom := req.GetRateLimitDomain(); dom != "" && !contains(doms, dom) {
		doms = append(doms, dom)
	}
	for _, dom := range doms {
		routeDescs := resolveDescriptors(routeLimits, dom, ps, p, route, http)
		var own []*wardenv1.RateLimitDescriptor
		if dom == req.GetRateLimitDomain() {
			own = req.GetRateLimitDescriptors()
		}
		if len(routeDescs) == 0 && len(own) == 0 {
			continue
		}
		if err := sc.fill(dom, own, req.Cost, p.Tier, "rate_limit_", routeDescs); err != nil {
			return err
		}
		if err := d.Limiter.Check(ctx, sc.req, &sc.res); err != nil {
			return s.limiterError(ctx, err)
		}
		resp.RateLimits = append(resp.RateLimits, rateLimitStatuses(&sc.res)...)
		resp.ResponseHeaders = rateLimitHeaders(&sc.res, resp.ResponseHeaders)
		if !sc.res.Allowed {
			resp.Stage = wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT
			resp.Reason = wardenv1.DenyReason_DENY_REASON_RATE_LIMITED
			resp.HttpStatus = 429
			s.audit.LogAttrs(ctx, slog.LevelInfo, "rate limited", attrRPC("Check"), attrStr("domain", dom),
				attrStr("subject", p.Subject), attrStr("route", resp.Route))
			return nil
		}
	}
	return nil
}

// resolveDescriptors turns a route's descriptor specs for one domain into request
// descriptors. A descriptor with an entry whose value is missing (an absent header, an
// anonymous principal) is skipped, as Envoy skips a rate-limit action whose header is absent.
func resolveDescriptors(specs []authz.RateLimitSpec, domain string, ps *authz.Params, p authn.Principal, route *authz.Route, http *wardenv1.HttpRequest) []limiter.RequestDescriptor {
	var out []limiter.RequestDescriptor
	for _, spec := range specs {
		if spec.Domain != domain {
			continue
		}
		entries := make([]limiter.Entry, 0, len(spec.Entries))
		for _, e := range spec.Entries {
			var v string
			switch e.Source {
			case authz.FromLiteral:
				v = e.Value
			case authz.FromPrincipalSubject:
				v = p.Subject
			case authz.FromPrincipalTenant:
				v = p.Tenant
			case authz.FromPrincipalTier:
				v = p.Tier
			case authz.FromRouteName:
				v = route.Name
			case authz.FromParam:
				v = ps.Value(e.ParamIndex)
			case authz.FromHeader:
				v = http.GetHeaders()[e.Name]
			}
			if v == "" {
				entries = nil
				break
			}
			entries = append(entries, limiter.Entry{Key: e.Key, Value: v})
		}
		if len(entries) > 0 {
			out = append(out, limiter.RequestDescriptor{Entries: entries})
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// identityHeaders tells the upstream who called. Values always replace the client's
// headers of the same name; empty ones are removed instead.
func identityHeaders(p authn.Principal, route *authz.Route, resp *wardenv1.CheckResponse) {
	set := func(name, value string) {
		if value == "" {
			resp.UpstreamHeadersToRemove = append(resp.UpstreamHeadersToRemove, name)
			return
		}
		resp.UpstreamHeaders = append(resp.UpstreamHeaders, &wardenv1.Header{Name: name, Value: value})
	}
	method := ""
	if p.Method != authn.MethodUnspecified {
		method = p.Method.String()
	}
	set(HeaderSubject, p.Subject)
	set(HeaderTenant, p.Tenant)
	set(HeaderRoles, strings.Join(p.Roles, ","))
	set(HeaderScopes, strings.Join(p.Scopes, " "))
	set(HeaderMethod, method)
	set(HeaderCredentialID, p.CredentialID)
	set(HeaderTier, p.Tier)
	if route != nil {
		resp.UpstreamHeadersToRemove = append(resp.UpstreamHeadersToRemove, route.StripHeaders...)
	}
}
