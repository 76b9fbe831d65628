package service

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Span names of the decisions and of Check's steps. Their attributes carry what a request
// was about and how it was decided (route name, rate-limit domain, outcome, reason, stage),
// never who asked: no subject, tenant, key id or token leaves the process in a span.
const (
	spanAuthenticate   = "warden.Authenticate"
	spanCheckRateLimit = "warden.CheckRateLimit"
	spanCheck          = "warden.Check"
	spanTarget         = "warden.check.target"
	spanAuthn          = "warden.check.authenticate"
	spanPermit         = "warden.check.permit"
	spanLimits         = "warden.check.limits"
	spanAllow          = "warden.check.allow"
)

// span is a decision's span, or the zero span when the call is not sampled (or the Server
// has no Tracer): then it was never started, and every method does nothing. An unsampled
// call costs one context lookup per decision (in start) and allocates nothing.
type span struct {
	sp trace.Span
	tr trace.Tracer
}

// start starts name under ctx's span when that span is sampled.
func (s *Server) start(ctx context.Context, name string) (context.Context, span) {
	if s.tracer == nil || !trace.SpanContextFromContext(ctx).IsSampled() {
		return ctx, span{}
	}
	ctx, sp := s.tracer.Start(ctx, name)
	return ctx, span{sp, s.tracer}
}

// on reports whether the span was started.
func (p span) on() bool { return p.sp != nil }

// child starts the span of a step of p's decision (nothing when p was not started).
func (p span) child(ctx context.Context, name string) (context.Context, span) {
	if p.sp == nil {
		return ctx, span{}
	}
	ctx, sp := p.tr.Start(ctx, name)
	return ctx, span{sp, p.tr}
}

// end ends the span with the outcome of a step or decision: an error (its gRPC code), a
// denial (its reason), or, with neither, allowed when the decision is made ("continue" for a
// step that let the request through to the next).
func (p span) end(allowed bool, reason wardenv1.DenyReason, err error) {
	if p.sp == nil {
		return
	}
	switch {
	case err != nil:
		c := status.Code(err).String()
		p.sp.SetAttributes(attrOutcome.String("error"), attrReason.String(c))
		p.sp.SetStatus(codes.Error, c)
	case allowed:
		p.sp.SetAttributes(attrOutcome.String("allowed"))
	default:
		p.sp.SetAttributes(attrOutcome.String("denied"), attrReason.String(reason.String()))
	}
	p.sp.End()
}

// endStep ends the span of one of Check's steps: denied is the step's denial, nil to go on.
func (p span) endStep(denied *wardenv1.CheckResponse, err error) {
	if p.sp == nil {
		return
	}
	if denied != nil && !denied.GetAllowed() {
		p.sp.SetAttributes(attrStage.String(denied.GetStage().String()))
		p.end(false, denied.GetReason(), err)
		return
	}
	if err == nil {
		p.sp.SetAttributes(attrOutcome.String("continue"))
		p.sp.End()
		return
	}
	p.end(false, 0, err)
}

// set adds attributes to a started span.
func (p span) set(kv ...attribute.KeyValue) {
	if p.sp != nil {
		p.sp.SetAttributes(kv...)
	}
}

const (
	attrOutcome = attribute.Key("warden.outcome") // allowed, denied, error, continue
	attrReason  = attribute.Key("warden.reason")  // the DenyReason, or the gRPC code of an error
	attrStage   = attribute.Key("warden.check.stage")
	attrRoute   = attribute.Key("warden.route")
	attrDomain  = attribute.Key("warden.ratelimit.domain")
	attrMethod  = attribute.Key("warden.authn.method") // api_key, jwt, mtls, ... of an authenticated call
)
