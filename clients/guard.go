package clients

import (
	"context"
	"log/slog"
	"net/http"

	"google.golang.org/grpc/codes"
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
	return g
}

// request is what the guard decides on.
type request struct {
	name       string // full gRPC method, or "METHOD /path"
	msg        any    // the unary request message, the *http.Request, or nil (a stream)
	creds      *wardenv1.Credentials
	grpcMethod string
	// http builds the request for Warden's route table; it is called only when no action
	// was mapped.
	http func() *wardenv1.HttpRequest
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

// decide asks Warden about r. An error means Warden could not decide (and the client fails
// closed); it is already a status error fit for the end client.
func (g *guard) decide(ctx context.Context, r *request) (outcome, error) {
	var o outcome
	var err error
	if g.cfg.actions != nil {
		if action, res, ok := g.cfg.actions(ctx, r.name, r.msg); ok {
			if g.cfg.cache != nil {
				o, err = g.cached(ctx, r, action, res)
			} else {
				o, err = g.checkAction(ctx, r, action, res)
			}
			return g.finish(ctx, r, o, err)
		}
	}
	d, err := g.c.Check(ctx, &wardenv1.CheckRequest{Credentials: r.creds, Http: r.http(), GrpcMethod: r.grpcMethod})
	if err == nil {
		o = fromCheck(d)
	}
	return g.finish(ctx, r, o, err)
}

// checkAction asks for an explicit action in one Check. The request carries neither http nor
// grpc_method: with either, Warden matches the route table and ignores the action.
func (g *guard) checkAction(ctx context.Context, r *request, action string, res *wardenv1.Resource) (outcome, error) {
	req := &wardenv1.CheckRequest{Credentials: r.creds, Action: action, Resource: res}
	if g.cfg.rateLimits != nil {
		req.RateLimitDomain, req.RateLimitDescriptors = g.cfg.rateLimits(ctx, r.name)
	}
	d, err := g.c.Check(ctx, req)
	if err != nil {
		return outcome{}, err
	}
	return fromCheck(d), nil
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

// cached authenticates through the AuthnCache, then authorizes the principal and checks its
// rate limits, in that order, stopping at the first denial (so a denied request consumes no
// quota, as in Check).
func (g *guard) cached(ctx context.Context, r *request, action string, res *wardenv1.Resource) (outcome, error) {
	key := credentialsDigest(r.creds)
	p, hit := g.cfg.cache.get(key)
	if !hit {
		asked := g.cfg.cache.now()
		ar, err := g.c.authenticate(ctx, r.creds)
		if err != nil {
			if g.c.failOpen(ctx, g.c.cfg.authFailOpen, "Authenticate", err) {
				return outcome{allowed: true, unauthenticated: true}, nil
			}
			return outcome{}, unmark(err)
		}
		if !ar.GetAuthenticated() {
			st := ar.GetHttpStatus()
			if st == 0 {
				st = http.StatusUnauthorized
			}
			return outcome{httpStatus: st, responseHeaders: ar.GetResponseHeaders(), denied: AuthenticateError(ar), reason: ar.GetReason()}, nil
		}
		p = ar.GetPrincipal()
		g.cfg.cache.put(key, p, asked)
	}
	az, err := g.c.Authorize(ctx, &wardenv1.AuthorizeRequest{
		Subject:  &wardenv1.AuthorizeRequest_Principal{Principal: p},
		Action:   action,
		Resource: res,
	})
	if err != nil {
		return outcome{}, err
	}
	if az.FailedOpen {
		// Not authorized: the request goes on as an unauthenticated one, never with a
		// principal that Warden did not clear for it.
		return outcome{allowed: true, unauthenticated: true}, nil
	}
	if !az.GetAllowed() {
		return outcome{httpStatus: az.GetHttpStatus(), denied: az.Err(), reason: az.GetReason()}, nil
	}
	o := outcome{allowed: true, principal: p}
	if g.cfg.rateLimits == nil {
		return o, nil
	}
	domain, descs := g.cfg.rateLimits(ctx, r.name)
	if len(descs) == 0 {
		return o, nil
	}
	rl, err := g.c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: domain, Descriptors: descs, Tier: p.GetTier()})
	if err != nil {
		return outcome{}, err
	}
	o.responseHeaders = rl.GetHeaders()
	if !rl.GetAllowed() {
		o.allowed, o.principal = false, nil
		o.httpStatus = http.StatusTooManyRequests
		o.denied, o.reason = rl.Err(), wardenv1.DenyReason_DENY_REASON_RATE_LIMITED
	}
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
				g.c.outage.warn(ctx, log, "warden did not answer in time: failing closed", "request", r.name, "err", err)
			}
			return o, status.Error(code, "the authorization service did not answer in time; retry later")
		case codes.InvalidArgument:
			// Warden refused the request itself (too many headers, a NUL in one): the end
			// client's fault, never a reason to fail open.
			return o, status.Error(codes.InvalidArgument, "malformed request")
		case codes.Unavailable:
			g.c.outage.warn(ctx, log, "warden unreachable: failing closed", "request", r.name, "err", err)
			return o, status.Error(codes.Unavailable, "the authorization service is unavailable; retry later")
		}
		log.ErrorContext(ctx, "warden could not decide", "request", r.name, "err", err)
		return o, status.Error(codes.Internal, "authorization failed")
	}
	if !o.allowed && log.Enabled(ctx, slog.LevelDebug) {
		log.DebugContext(ctx, "warden denied", "request", r.name, "http_status", o.httpStatus, "reason", o.reason.String())
	}
	return o, nil
}
