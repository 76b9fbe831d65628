package clients

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Client calls Warden's WardenService over a connection the caller owns (a *grpc.ClientConn,
// or anything that implements grpc.ClientConnInterface). Create it with NewClient; the zero
// value is not usable. It is safe for concurrent use.
//
// Every call is bounded by WithTimeout and by the caller's deadline, whichever ends first.
// A call that Warden answers UNAVAILABLE is retried (WithRetry) with exponential backoff and
// full jitter, only while the deadline leaves room for the wait. When Warden cannot be
// reached at all (UNAVAILABLE after the retries, or the client's own timeout while the
// caller's context is still alive), each call follows its failure policy: Check and Authorize
// fail closed by default (they return the error; WithAuthFailurePolicy), CheckRateLimit fails
// open (it returns an allowed decision whose FailedOpen field is true;
// WithRateLimitFailurePolicy). An outage is logged at most once per WithOutageLog interval,
// with the number of failed calls.
//
// Decisions are data: a denial is a normal response with allowed=false. Callers who prefer
// errors turn a denial into a gRPC status error with Decision.Err, CheckError,
// AuthenticateError, AuthorizeError or RateLimitError.
type Client struct {
	svc    wardenv1.WardenServiceClient
	cfg    clientConfig
	outage outageLog
}

// NewClient returns a Client that calls Warden over cc. The caller keeps ownership of cc and
// closes it.
func NewClient(cc grpc.ClientConnInterface, opts ...ClientOption) *Client {
	c := &Client{svc: wardenv1.NewWardenServiceClient(cc), cfg: defaultClientConfig()}
	for _, o := range opts {
		o.applyToClient(&c.cfg)
	}
	if c.cfg.log == nil {
		c.cfg.log = slog.Default()
	}
	c.outage.interval = c.cfg.outageInterval
	return c
}

// Decision is Warden's answer to Check, or the client's stand-in for it when Warden could
// not be reached and the client fails open. The embedded response is never nil.
type Decision struct {
	*wardenv1.CheckResponse
	// FailedOpen is true when Warden could not be reached and the authentication failure
	// policy is FailOpen (WithAuthFailurePolicy): the response is then {allowed: true,
	// http_status: 200}, with no principal.
	FailedOpen bool
	// Cause is why Warden could not decide, when FailedOpen.
	Cause error
}

// Err returns nil if the decision allows the request, and otherwise the gRPC status error
// that CheckError describes.
func (d *Decision) Err() error { return CheckError(d.CheckResponse) }

// AuthorizeDecision is Warden's answer to Authorize, or the client's stand-in for it when
// the authentication failure policy is FailOpen. The embedded response is never nil.
type AuthorizeDecision struct {
	*wardenv1.AuthorizeResponse
	// FailedOpen is true when Warden could not be reached and the authentication failure
	// policy (WithAuthFailurePolicy) allowed the request.
	FailedOpen bool
	// Cause is why Warden could not decide, when FailedOpen.
	Cause error
}

// Err returns nil if allowed, and otherwise the error that AuthorizeError describes.
func (d *AuthorizeDecision) Err() error { return AuthorizeError(d.AuthorizeResponse) }

// RateLimitDecision is Warden's answer to CheckRateLimit, or the client's stand-in for it
// when the rate-limit failure policy is FailOpen (the default). The embedded response is
// never nil.
type RateLimitDecision struct {
	*wardenv1.CheckRateLimitResponse
	// FailedOpen is true when Warden could not be reached and the rate-limit failure policy
	// (WithRateLimitFailurePolicy) allowed the request.
	FailedOpen bool
	// Cause is why Warden could not decide, when FailedOpen.
	Cause error
}

// Err returns nil if allowed, and otherwise the error that RateLimitError describes.
func (d *RateLimitDecision) Err() error { return RateLimitError(d.CheckRateLimitResponse) }

// Check authenticates, authorizes and rate-limits in one round trip.
func (c *Client) Check(ctx context.Context, req *wardenv1.CheckRequest) (*Decision, error) {
	resp, err := invoke(ctx, c, req, c.svc.Check)
	if err != nil {
		if c.failOpen(ctx, c.cfg.authFailOpen, "Check", err) {
			return &Decision{CheckResponse: &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200}, FailedOpen: true, Cause: err}, nil
		}
		return nil, unmark(err)
	}
	return &Decision{CheckResponse: resp}, nil
}

// Authenticate turns credentials into a principal. It never fails open: there is no identity
// to stand in for one Warden could not establish.
func (c *Client) Authenticate(ctx context.Context, creds *wardenv1.Credentials) (*wardenv1.AuthenticateResponse, error) {
	resp, err := invoke(ctx, c, &wardenv1.AuthenticateRequest{Credentials: creds}, c.svc.Authenticate)
	return resp, unmark(err)
}

// Authorize decides whether a principal (or the holder of credentials) may perform an action
// on a resource.
func (c *Client) Authorize(ctx context.Context, req *wardenv1.AuthorizeRequest) (*AuthorizeDecision, error) {
	resp, err := invoke(ctx, c, req, c.svc.Authorize)
	if err != nil {
		if c.failOpen(ctx, c.cfg.authFailOpen, "Authorize", err) {
			return &AuthorizeDecision{AuthorizeResponse: &wardenv1.AuthorizeResponse{Allowed: true, HttpStatus: 200}, FailedOpen: true, Cause: err}, nil
		}
		return nil, unmark(err)
	}
	return &AuthorizeDecision{AuthorizeResponse: resp}, nil
}

// CheckRateLimit checks and consumes rate limits, all or nothing.
func (c *Client) CheckRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*RateLimitDecision, error) {
	resp, err := invoke(ctx, c, req, c.svc.CheckRateLimit)
	if err != nil {
		if c.failOpen(ctx, c.cfg.rateLimitFailOpen, "CheckRateLimit", err) {
			return &RateLimitDecision{CheckRateLimitResponse: &wardenv1.CheckRateLimitResponse{Allowed: true}, FailedOpen: true, Cause: err}, nil
		}
		return nil, unmark(err)
	}
	return &RateLimitDecision{CheckRateLimitResponse: resp}, nil
}

// Unreachable reports whether err means that Warden could not be reached or could not answer
// in time: UNAVAILABLE, or DEADLINE_EXCEEDED. These are the errors a FailOpen policy turns
// into allowed decisions (the deadline only when it was the client's own timeout).
func Unreachable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// failOpen reports whether err should become an allowed decision under the policy open, and
// logs the outage if so. The caller's own cancellation or deadline never fails open: its
// request is over anyway.
func (c *Client) failOpen(ctx context.Context, open bool, op string, err error) bool {
	var cd *callerDeadline
	if !open || ctx.Err() != nil || !Unreachable(err) || errors.As(err, &cd) {
		return false
	}
	c.outage.warn(ctx, c.cfg.log, "warden unreachable: failing open", "op", op, "err", err)
	return true
}

// outageLog rate-limits the warnings of an outage: the first failure is logged at once, the
// next ones at most once per interval, with the number of failures since the last line.
type outageLog struct {
	interval time.Duration
	last     atomic.Int64 // UnixNano of the last line, 0 before the first
	failures atomic.Int64 // since the last line
}

func (l *outageLog) warn(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	l.failures.Add(1)
	now := time.Now().UnixNano()
	last := l.last.Load()
	if last != 0 && now-last < int64(l.interval) || !l.last.CompareAndSwap(last, now) {
		return
	}
	log.WarnContext(ctx, msg, append(args, "failures", l.failures.Swap(0), "log_interval", l.interval)...)
}

// invoke calls rpc within the client's timeout and the caller's deadline, retrying
// UNAVAILABLE answers with exponential backoff and full jitter.
//
// An error is marked (*callerDeadline) when the caller's own deadline was the one that
// bound the call, so that failOpen never turns it into an allowed decision.
func invoke[Req, Resp any](ctx context.Context, c *Client, req Req, rpc func(context.Context, Req, ...grpc.CallOption) (Resp, error)) (resp Resp, err error) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= c.cfg.timeout {
		defer func() {
			if status.Code(err) == codes.DeadlineExceeded {
				err = &callerDeadline{err}
			}
		}()
	}
	var zero Resp
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		resp, err := rpc(ctx, req)
		if err == nil {
			return resp, nil
		}
		err = contextCode(ctx, err)
		if status.Code(err) != codes.Unavailable || attempt >= c.cfg.maxAttempts {
			return zero, err
		}
		wait := c.cfg.backoff(attempt)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return zero, err // no time left for another attempt
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return zero, contextCode(ctx, ctx.Err())
		case <-t.C:
		}
	}
}

// callerDeadline marks a DEADLINE_EXCEEDED caused by the caller's deadline.
type callerDeadline struct{ error }

func (e *callerDeadline) Unwrap() error { return e.error }

// GRPCStatus keeps status.Code and status.FromError working on the marked error.
func (e *callerDeadline) GRPCStatus() *status.Status { return status.Convert(e.error) }

// unmark returns err without the callerDeadline mark.
func unmark(err error) error {
	if cd, ok := err.(*callerDeadline); ok {
		return cd.error
	}
	return err
}

// contextCode turns a context error into its gRPC status, and leaves status errors as they
// are. It is the one place where context errors become codes.
func contextCode(ctx context.Context, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "warden: deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "warden: canceled")
	}
	if ctx.Err() != nil {
		return contextCode(ctx, ctx.Err())
	}
	return status.Error(codes.Unknown, err.Error())
}

// backoff is the wait before attempt+1: uniformly random in [0, min(max, base·2^(attempt-1))).
func (c *clientConfig) backoff(attempt int) time.Duration {
	d := c.maxBackoff
	if attempt-1 < 30 {
		if e := c.baseBackoff << (attempt - 1); e > 0 && e < d {
			d = e
		}
	}
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}
