package clients

import (
	"context"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

type principalKey struct{}

// PrincipalFrom returns the principal the interceptors or the middleware put in the request's
// context, and false if there is none: the request was skipped (WithSkip), matched a public
// route, or was let through unauthenticated while Warden was unreachable (FailedOpenFrom).
// The principal may be
// shared with other requests (AuthnCache): treat it as read-only.
func PrincipalFrom(ctx context.Context) (*wardenv1.Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*wardenv1.Principal)
	return p, ok && p != nil
}

// ContextWithPrincipal returns a copy of ctx that carries p, as the interceptors and the
// middleware do; tests of handlers use it to stand in for them.
func ContextWithPrincipal(ctx context.Context, p *wardenv1.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

type failedOpenKey struct{}

// FailedOpenFrom reports whether the interceptors or the middleware let the request through
// unauthenticated because Warden could not be reached and the authentication failure policy
// is FailOpen (WithAuthFailurePolicy): the marker "unauthenticated, Warden unavailable". Such
// a request never carries a principal, nor any client-sent identity header; a handler that
// must know its caller refuses it.
func FailedOpenFrom(ctx context.Context) bool {
	v, _ := ctx.Value(failedOpenKey{}).(bool)
	return v
}

// contextFailedOpen marks ctx as FailedOpenFrom.
func contextFailedOpen(ctx context.Context) context.Context {
	return context.WithValue(ctx, failedOpenKey{}, true)
}

// handlerContext is the context a handler runs with after the allowed outcome o.
func handlerContext(ctx context.Context, o *outcome) context.Context {
	switch {
	case o.unauthenticated:
		return contextFailedOpen(ctx)
	case o.principal != nil:
		return ContextWithPrincipal(ctx, o.principal)
	}
	return ctx
}
