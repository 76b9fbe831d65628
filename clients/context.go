package clients

import (
	"context"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

type principalKey struct{}

// PrincipalFrom returns the principal the interceptors or the middleware put in the request's
// context, and false if there is none: the request was skipped (WithSkip), matched a public
// route, or was let through by WithFailOpen while Warden was unreachable. The principal may be
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
