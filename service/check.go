package service

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/limiter"
)

const maxPath = 8192

// Check authenticates, authorizes and rate-limits in one round trip, in that order, stopping
// at the first denial. The request is either an HTTP request matched against the route table
// (http, or grpc_method as POST /pkg.Service/Method), or an explicit action on a resource.
//
// It reads as its steps: target (validate, match the route), authenticate (or verify the
// webhook, or nothing for a public route), permit, limit, allow. Each step returns a denial
// (a response to send as it is) or an error, or nil and nil to continue.
func (s *Server) Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return s.check(ctx, req, nil)
}

// CheckPooled is Check for a caller that reads the answer at once and then hands its
// messages back with the returned Release, for the next call to reuse: the
// Envoy adapter, which converts the answer to Envoy's. The answer, and every message and
// slice it holds, must not be read after Release (the strings it holds may be kept). An
// answer sent by gRPC is not released: Check allocates its own.
func (s *Server) CheckPooled(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, interface{ Release() }, error) {
	a := answerPool.Get().(*checkAnswer)
	resp, err := s.check(ctx, req, &a.parts)
	return resp, a, err
}

// checkAnswer holds the messages of one answer of CheckPooled.
type checkAnswer struct{ parts checkParts }

var answerPool = sync.Pool{New: func() any { return new(checkAnswer) }}

// Release hands the answer's messages back for reuse; a nil checkAnswer is ignored.
func (a *checkAnswer) Release() {
	if a == nil {
		return
	}
	a.parts.reset()
	answerPool.Put(a)
}

// checkParts is the messages of an allowed answer of Check, in one allocation: the response,
// its principal, the identity headers and the rate-limit statuses and headers. A nil
// *checkParts allocates each part apart, when needed (Check, whose answer gRPC marshals after
// it returns).
type checkParts struct {
	resp      wardenv1.CheckResponse
	principal wardenv1.Principal
	identity  identityParts
	rl        rlParts
}

// reset zeroes p for its next answer.
func (p *checkParts) reset() { *p = checkParts{} }

func (p *checkParts) response() *wardenv1.CheckResponse {
	if p == nil {
		return &wardenv1.CheckResponse{}
	}
	return &p.resp
}

func (p *checkParts) principalMsg() *wardenv1.Principal {
	if p == nil {
		return new(wardenv1.Principal)
	}
	return &p.principal
}

func (p *checkParts) identityParts() *identityParts {
	if p == nil {
		return new(identityParts)
	}
	return &p.identity
}

func (p *checkParts) rlParts() *rlParts {
	if p == nil {
		return new(rlParts)
	}
	return &p.rl
}

func (s *Server) check(ctx context.Context, req *wardenv1.CheckRequest, parts *checkParts) (resp *wardenv1.CheckResponse, err error) {
	d := s.deps.Load()
	ctx, sp := s.start(ctx, spanCheck) // spans only when sampled: see span
	if sp.on() {
		defer func() { sp.end(resp.GetAllowed(), resp.GetReason(), err) }()
	}
	var t target
	sctx, step := sp.child(ctx, spanTarget)
	denied, err := s.checkTarget(sctx, d, req, &t)
	if step.on() && t.route != nil {
		step.set(attrRoute.String(t.route.Name))
	}
	if step.endStep(denied, err); denied != nil || err != nil {
		return denied, err
	}
	resp = parts.response()
	if t.route != nil {
		resp.Route = t.route.Name
	}
	sctx, step = sp.child(ctx, spanAuthn)
	p, denied, err := s.checkAuthenticate(sctx, d, req, &t, resp, parts)
	if step.endStep(denied, err); denied != nil || err != nil {
		return denied, err
	}
	sctx, step = sp.child(ctx, spanPermit)
	denied, err = s.checkPermit(sctx, d, req, &t, p, resp)
	if step.endStep(denied, err); denied != nil || err != nil {
		return denied, err
	}
	sctx, step = sp.child(ctx, spanLimits)
	err = s.checkLimits(sctx, d, req, t.route, &t.ps, p, t.http, resp, parts)
	if step.on() && resp.Stage != wardenv1.CheckStage_CHECK_STAGE_UNSPECIFIED {
		denied = resp
	}
	if step.endStep(denied, err); err != nil {
		return nil, err
	}
	if resp.Stage != wardenv1.CheckStage_CHECK_STAGE_UNSPECIFIED {
		return resp, nil
	}
	_, step = sp.child(ctx, spanAllow)
	resp = checkAllow(d, &t, p, resp, parts)
	step.endStep(nil, nil)
	return resp, nil
}

// target is what a Check request is about: an HTTP request (or gRPC method) and the route it
// matched, with the route's parameters; or, with path empty, an explicit action on a resource.
type target struct {
	http   *wardenv1.HttpRequest
	route  *authz.Route // nil without a route table match
	method string
	path   string // without the query; empty for an action on a resource
	ps     authz.Params
}

// checkTarget validates the request and matches its route into t. A malformed request path
// (one the route table refuses to match) is an authorization denial, audited.
func (s *Server) checkTarget(ctx context.Context, d *Deps, req *wardenv1.CheckRequest, t *target) (*wardenv1.CheckResponse, error) {
	if err := s.headers.check("http.headers", req.GetHttp().GetHeaders()); err != nil {
		return nil, err
	}
	if err := s.headers.check("credentials.headers", req.GetCredentials().GetHeaders()); err != nil {
		return nil, err
	}
	t.http = req.GetHttp()
	if t.http == nil && req.GetGrpcMethod() == "" {
		if req.GetAction() != "" && req.GetResource().GetType() == "" {
			return nil, invalidArgument("resource.type", "required with action")
		}
		return nil, nil
	}
	if req.GetAction() != "" {
		// The route decides the action: an explicit one would be ignored, silently.
		return nil, invalidArgument("action", "give either http or grpc_method (the route table decides), or action with resource, not both")
	}
	if d.Policy == nil {
		return nil, unimplemented("Check: no route table is configured (config section authz.routes)")
	}
	method, path := t.http.GetMethod(), t.http.GetPath()
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
	t.method, t.path = method, path
	var reason authz.Reason
	t.route, reason = d.Policy.Match(method, path, &t.ps)
	if reason == authz.MalformedRequest {
		dec := authz.Decision{Reason: authz.MalformedRequest}
		d.Auditor.RecordCheck(ctx, authn.Principal{}, method, path, &t.ps, dec)
		return deny(wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, dec.Reason), nil
	}
	return nil, nil
}

// checkAuthenticate finds who calls: a webhook route verifies the sender's signature instead,
// a public route needs no credentials (both answer the zero Principal); any other request
// authenticates its credentials, or the HTTP request's headers when it gives none. A backend
// that cannot answer is a 503 decision.
func (s *Server) checkAuthenticate(ctx context.Context, d *Deps, req *wardenv1.CheckRequest, t *target, resp *wardenv1.CheckResponse, parts *checkParts) (authn.Principal, *wardenv1.CheckResponse, error) {
	switch {
	case t.route != nil && t.route.Webhook != "":
		if denied, err := s.checkWebhook(ctx, d, t.route, t.http, resp); err != nil || denied {
			return authn.Principal{}, resp, err
		}
		return authn.Principal{}, nil, nil
	case t.route != nil && t.route.Public:
		return authn.Principal{}, nil, nil
	}
	creds := req.GetCredentials()
	if creds == nil && t.http != nil {
		creds = &wardenv1.Credentials{Headers: t.http.GetHeaders()}
	}
	p, denied, err := s.authenticate(ctx, d, creds)
	if err != nil {
		if dependencyDown(err) {
			s.audit.LogAttrs(ctx, slog.LevelWarn, "authentication backend unavailable: 503", attrRPC("Check"))
			return p, unavailableDecision(resp, wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE), nil
		}
		return p, nil, err
	}
	if denied != nil {
		resp.Stage = wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE
		resp.Reason, resp.HttpStatus, resp.ResponseHeaders = denied.Reason, denied.HttpStatus, denied.ResponseHeaders
		return p, resp, nil
	}
	resp.Principal = principalInto(p, parts.principalMsg())
	return p, nil, nil
}

// checkPermit authorizes p: the matched route's rule, or the request's action on its
// resource; a request with neither is permitted. Webhook and public routes authenticated
// no one and are permitted by the route itself. Denials are audited.
func (s *Server) checkPermit(ctx context.Context, d *Deps, req *wardenv1.CheckRequest, t *target, p authn.Principal, resp *wardenv1.CheckResponse) (*wardenv1.CheckResponse, error) {
	if t.route != nil && (t.route.Webhook != "" || t.route.Public) {
		return nil, nil
	}
	var dec authz.Decision
	switch {
	case t.path != "":
		dec = d.Policy.CheckRoute(p, t.route, &t.ps) // matched by checkTarget: not again
		if !dec.Allowed {
			d.Auditor.RecordCheck(ctx, p, t.method, t.path, &t.ps, dec)
		}
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
		return nil, nil
	}
	if dec.Allowed {
		return nil, nil
	}
	r := deny(wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, dec.Reason)
	r.Principal, r.Route = resp.Principal, resp.Route
	return r, nil
}

// checkAllow makes resp the allowing answer, with the identity headers for the upstream.
func checkAllow(d *Deps, t *target, p authn.Principal, resp *wardenv1.CheckResponse, parts *checkParts) *wardenv1.CheckResponse {
	resp.Allowed = true
	resp.HttpStatus = 200
	identityHeaders(p, t.route, t.http.GetHeaders(), d.Headers.Identity, resp, parts.identityParts())
	return resp
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

// unavailableDecision makes resp a 503 denial with Retry-After: a dependency (the key store,
// the introspection endpoint, the webhook replay store) could not answer within the request's
// budget. It is a decision, not an error, so that a gateway that allows on errors
// (failure_mode_allow) still refuses, and a client retries.
func unavailableDecision(resp *wardenv1.CheckResponse, stage wardenv1.CheckStage) *wardenv1.CheckResponse {
	resp.Stage = stage
	resp.Reason = wardenv1.DenyReason_DENY_REASON_UNSPECIFIED
	resp.HttpStatus = 503
	resp.ResponseHeaders = retryAfterHeaders
	return resp
}

// retryAfterHeaders is the header of every 503 decision; shared, never modified.
var retryAfterHeaders = []*wardenv1.Header{{Name: "Retry-After", Value: "1"}}

func wwwAuthenticate(invalid bool) string {
	if invalid {
		return `Bearer realm="warden", error="invalid_token"`
	}
	return `Bearer realm="warden"`
}

// checkWebhook verifies a webhook route's signature over the body the gateway forwarded. A
// duplicate delivery is denied with Deps.WebhookReplayStatus (409, or 200 so that the
// gateway acknowledges it to the sender), never forwarded again.
func (s *Server) checkWebhook(ctx context.Context, d *Deps, route *authz.Route, http *wardenv1.HttpRequest, resp *wardenv1.CheckResponse) (denied bool, err error) {
	if d.Webhooks == nil {
		return false, unimplemented("Check: route " + route.Name + " verifies webhooks, but no webhook sources are configured")
	}
	r := d.Webhooks.Verify(ctx, route.Webhook, webhook.Map(http.GetHeaders()), http.GetBody())
	if r.Valid {
		return false, nil
	}
	if r.Reason == webhook.Unavailable {
		// Never accepted unchecked: refused with 503, so that the sender retries.
		s.audit.LogAttrs(ctx, slog.LevelWarn, "webhook replay store unavailable: 503", attrRPC("Check"),
			attrStr("route", route.Name), attrStr("source", route.Webhook), attrStr("event_id", r.EventID))
		unavailableDecision(resp, wardenv1.CheckStage_CHECK_STAGE_WEBHOOK)
		return true, nil
	}
	resp.Stage = wardenv1.CheckStage_CHECK_STAGE_WEBHOOK
	resp.Reason = webhookReason(r.Reason)
	resp.HttpStatus = 401
	if r.Duplicate {
		resp.HttpStatus = cmp.Or(d.WebhookReplayStatus, 409)
	}
	s.audit.LogAttrs(ctx, slog.LevelInfo, "webhook denied", attrRPC("Check"), attrStr("route", route.Name),
		attrStr("source", route.Webhook), attrStr("reason", r.Reason.String()), attrStr("event_id", r.EventID))
	return true, nil
}

// checkLimits applies the route's rate limits and the request's own descriptors, one
// limiter call per domain (all or nothing within a domain).
func (s *Server) checkLimits(ctx context.Context, d *Deps, req *wardenv1.CheckRequest, route *authz.Route, ps *authz.Params, p authn.Principal, http *wardenv1.HttpRequest, resp *wardenv1.CheckResponse, cp *checkParts) error {
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
	var parts *rlParts
	for _, dom := range doms {
		routeDescs := resolveDescriptors(sc, routeLimits, dom, ps, p, route, http)
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
		err := d.Limiter.Check(ctx, sc.req, &sc.res)
		if parts == nil {
			parts = cp.rlParts()
		}
		if errors.Is(err, limiter.ErrUnavailable) {
			// fail_closed with no answer from the store: a 503 decision, not an error, like
			// every other dependency of Check (dependencyDown).
			s.audit.LogAttrs(ctx, slogWarn, "rate-limit store unavailable: 503", attrRPC("Check"), attrStr("domain", dom),
				attrStr("subject", p.Subject), attrStr("route", resp.Route))
			resp.RateLimits = parts.statuses(&sc.res, resp.RateLimits)
			unavailableDecision(resp, wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT)
			return nil
		}
		if err != nil {
			return s.limiterError(ctx, sc.requestField(err))
		}
		resp.RateLimits = parts.statuses(&sc.res, resp.RateLimits)
		resp.ResponseHeaders = parts.headers(&sc.res, resp.ResponseHeaders, d.Headers.RateLimit)
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
func resolveDescriptors(sc *rlScratch, specs []authz.RateLimitSpec, domain string, ps *authz.Params, p authn.Principal, route *authz.Route, http *wardenv1.HttpRequest) []limiter.RequestDescriptor {
	// Entries go to the scratch's buffer; a descriptor slices it once its entries are all
	// there (a growth of the buffer leaves earlier descriptors on the old array, unchanged).
	out := sc.routeDescs[:0]
	entries := sc.routeEntries[:0]
	for _, spec := range specs {
		if spec.Domain != domain {
			continue
		}
		start := len(entries)
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
				entries = entries[:start]
				break
			}
			entries = append(entries, limiter.Entry{Key: e.Key, Value: v})
		}
		if len(entries) > start {
			out = append(out, limiter.RequestDescriptor{Entries: entries[start:len(entries):len(entries)]})
		}
	}
	sc.routeDescs, sc.routeEntries = out, entries
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

// identityHeaders tells the upstream who called (the headers names names). Values always
// replace the client's headers of the same name; empty ones are removed instead, and so is
// every other header of the request that names reserves: those names are Warden's alone.
func identityHeaders(p authn.Principal, route *authz.Route, reqHeaders map[string]string, names idheader.Set, resp *wardenv1.CheckResponse, parts *identityParts) {
	set, remove := parts.ptrs[:0], parts.remove[:0]
	add := func(name, value string) {
		if value == "" {
			remove = append(remove, name)
			return
		}
		h := &parts.hdrs[len(set)]
		h.Name, h.Value = name, value
		set = append(set, h)
	}
	method := ""
	if p.Method != authn.MethodUnspecified {
		method = p.Method.String()
	}
	add(names.Subject(), p.Subject)
	add(names.Tenant(), p.Tenant)
	add(names.Roles(), strings.Join(p.Roles, ","))
	add(names.Scopes(), strings.Join(p.Scopes, " "))
	add(names.Method(), method)
	add(names.CredentialID(), p.CredentialID)
	add(names.Tier(), p.Tier)
	for name := range reqHeaders {
		if names.Reserved(name) && !names.IsName(name) {
			remove = append(remove, name)
		}
	}
	if route != nil {
		remove = append(remove, route.StripHeaders...)
	}
	if len(set) > 0 {
		resp.UpstreamHeaders = appendOrUse(resp.UpstreamHeaders, set)
	}
	if len(remove) > 0 {
		resp.UpstreamHeadersToRemove = appendOrUse(resp.UpstreamHeadersToRemove, remove)
	}
}

// identityParts holds identityHeaders' headers and both slices in one allocation (a route's
// strip_headers or the client's own x-warden-* headers may grow the removals past it).
type identityParts struct {
	hdrs   [idheader.Count]wardenv1.Header
	ptrs   [idheader.Count]*wardenv1.Header
	remove [idheader.Count]string
}

// appendOrUse appends xs to to, or returns xs itself when to is empty.
func appendOrUse[T any](to, xs []T) []T {
	if len(to) == 0 {
		return xs
	}
	return append(to, xs...)
}
