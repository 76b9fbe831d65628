package clients

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// guard is the decision logic the interceptors and the middleware share.
type guard struct {
	c   *Client
	cfg handlerConfig
}

func newGuard(c *Client, opts []HandlerOption) *guard {
	g := &guard{c: c, cfg: defaultHandlerConfig()}
	for _, o := range opts {
		o.applyToHandler(&g.cfg)
	}
	for i, n := range g.cfg.identity.Names() {
		g.cfg.idCanon[i] = canonicalName(n)
	}
	return g
}

// canonicalName is name in net/http's canonical form; the identity headers' forms were
// computed once, whatever names WithIdentityHeaders gave.
func (g *guard) canonicalName(name string) string {
	for i, n := range g.cfg.identity.Names() {
		if n == name {
			return g.cfg.idCanon[i]
		}
	}
	return canonicalName(name)
}

// request is what the guard decides on: a gRPC call (md set) or an HTTP request (hr set).
type request struct {
	grpcMethod string        // the full gRPC method
	md         metadata.MD   // the call's incoming metadata (a copy the guard owns)
	hr         *http.Request // the HTTP request
	path       string        // its escaped path
	body       []byte        // its body, when forwarded
	msg        any           // the unary request message, the *http.Request, or nil (a stream)
	creds      *wardenv1.Credentials
}

// name is the full gRPC method, or "METHOD /path". It is built only when needed.
func (r *request) name() string {
	if r.hr == nil {
		return r.grpcMethod
	}
	return r.hr.Method + " " + r.path
}

// http is the request for Warden's route table, built only when no action was mapped: for a
// call, {method: "POST", path: full method, host: :authority, headers: text metadata}.
func (r *request) http() *wardenv1.HttpRequest {
	if r.hr == nil {
		return &wardenv1.HttpRequest{Method: "POST", Path: r.grpcMethod, Host: first(r.md[":authority"]), Headers: textMetadata(r.md)}
	}
	return &wardenv1.HttpRequest{Method: r.hr.Method, Path: r.path, Host: r.hr.Host, Headers: lowerHeaders(r.hr.Header), Body: r.body}
}

// outcome is the guard's decision on one request.
type outcome struct {
	allowed bool
	// unauthenticated is true when the request goes on because Warden could not be reached
	// and the authentication policy fails open: it then has no principal, and its context
	// carries the FailedOpenFrom marker.
	unauthenticated bool
	principal       *wardenv1.Principal
	// httpStatus is the status for a denial.
	httpStatus int32
	// responseHeaders go to the end client, allowed or not (RateLimit*, WWW-Authenticate).
	responseHeaders []*wardenv1.Header
	// upstreamHeaders and remove rewrite the request on allow, after the client's own
	// identity headers are removed (always, whoever decided: see identity.go).
	upstreamHeaders []*wardenv1.Header
	remove          []string
	// denied is the gRPC status error for a denial, and reason Warden's reason (for the log).
	denied error
	reason wardenv1.DenyReason
}

// decide asks Warden about r, with one Check, or from the cache with at most one
// CheckRateLimit. An error means Warden could not decide (and the client fails closed); it
// is already a status error fit for the end client.
func (g *guard) decide(ctx context.Context, r *request) (outcome, error) {
	req := &wardenv1.CheckRequest{Credentials: r.creds}
	mapped := false
	if g.cfg.actions != nil {
		req.Action, req.Resource, mapped = g.cfg.actions(ctx, r.name(), r.msg)
	}
	if mapped {
		// Neither http nor grpc_method: with either, Warden matches the route table and
		// ignores the action.
		if g.cfg.rateLimits != nil {
			req.RateLimitDomain, req.RateLimitDescriptors = g.cfg.rateLimits(ctx, r.name())
		}
	} else {
		req.Action, req.Resource = "", nil
		req.Http, req.GrpcMethod = r.http(), r.grpcMethod
	}
	cache := g.cfg.cache
	var key [sha256.Size]byte
	var asked time.Time
	if cache != nil && len(req.GetHttp().GetBody()) == 0 {
		if mapped {
			k := newCacheKey("action").credentials(r.creds)
			k.field(req.Action)
			key = k.resource(req.Resource).sum()
		} else {
			key = newCacheKey("route").credentials(r.creds).http(req.Http, req.GrpcMethod).sum()
		}
		if d, hit := cache.get(key); hit {
			o, err := g.hit(ctx, req, d)
			return g.finish(ctx, r, o, err)
		}
		asked = cache.now()
	} else {
		cache = nil
	}
	d, err := g.c.Check(ctx, req)
	if err != nil {
		return g.finish(ctx, r, outcome{}, err)
	}
	o := fromCheck(d)
	// A route's rate limits cannot be asked again without Check (only Warden knows their
	// descriptors): a route that applied some is not cached.
	if cache != nil && o.allowed && !d.FailedOpen && (mapped || len(d.GetRateLimits()) == 0) {
		cache.put(key, cached{p: o.principal, upstream: o.upstreamHeaders, remove: o.remove}, asked)
	}
	return g.finish(ctx, r, o, nil)
}

func fromCheck(d *Decision) outcome {
	o := outcome{
		allowed:         d.GetAllowed(),
		unauthenticated: d.FailedOpen,
		principal:       d.GetPrincipal(),
		responseHeaders: d.GetResponseHeaders(),
	}
	if o.allowed {
		o.upstreamHeaders, o.remove = d.GetUpstreamHeaders(), d.GetUpstreamHeadersToRemove()
	} else {
		o.httpStatus, o.denied, o.reason = checkStatus(d.CheckResponse), d.Err(), d.GetReason()
	}
	return o
}

// hit decides req from the cached decision d: allowed, after its rate limits (if any) in
// one CheckRateLimit with the principal's tier.
func (g *guard) hit(ctx context.Context, req *wardenv1.CheckRequest, d cached) (outcome, error) {
	o := outcome{allowed: true, principal: d.p, upstreamHeaders: d.upstream, remove: d.remove}
	if len(req.RateLimitDescriptors) == 0 {
		return o, nil
	}
	rl, err := g.c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{
		Domain: req.RateLimitDomain, Descriptors: req.RateLimitDescriptors, Cost: req.Cost, Tier: d.p.GetTier(),
	})
	if err != nil {
		return outcome{}, err
	}
	if !rl.GetAllowed() {
		return outcome{httpStatus: http.StatusTooManyRequests, responseHeaders: rl.GetHeaders(), denied: rl.Err(),
			reason: wardenv1.DenyReason_DENY_REASON_RATE_LIMITED}, nil
	}
	o.responseHeaders = rl.GetHeaders()
	return o, nil
}

// finish logs the outcome and turns a client error into the status the end client sees.
func (g *guard) finish(ctx context.Context, r *request, o outcome, err error) (outcome, error) {
	log := g.c.cfg.log
	if err != nil {
		code := status.Code(err)
		switch code {
		case codes.Canceled:
			return o, status.Error(code, "request canceled before authorization completed")
		case codes.DeadlineExceeded:
			if ctx.Err() == nil { // the client's own timeout: Warden is slow or gone
				g.c.outage.warn(ctx, log, "warden did not answer in time: failing closed", "request", r.name(), "err", err)
			}
			return o, status.Error(code, "the authorization service did not answer in time; retry later")
		case codes.InvalidArgument:
			// Warden refused the request itself (too many headers, a NUL in one): the end
			// client's fault, never a reason to fail open.
			return o, status.Error(codes.InvalidArgument, "malformed request")
		case codes.Unavailable:
			g.c.outage.warn(ctx, log, "warden unreachable: failing closed", "request", r.name(), "err", err)
			return o, status.Error(codes.Unavailable, "the authorization service is unavailable; retry later")
		}
		log.ErrorContext(ctx, "warden could not decide", "request", r.name(), "err", err)
		return o, status.Error(codes.Internal, "authorization failed")
	}
	if !o.allowed && log.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "warden denied", "request", r.name(), "http_status", o.httpStatus, "reason", o.reason.String())
	}
	return o, nil
}
