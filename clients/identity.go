package clients

import (
	"context"
	"net/http"

	"google.golang.org/grpc/metadata"

	"github.com/wardenhq/warden/idheader"
)

// The identity headers (x-warden-* by default, or the names given by WithIdentityHeaders;
// package idheader) are Warden's alone: the middleware and the interceptors remove the
// request's own copies before any handler runs (allowed by Check, by the cache, failed open,
// or on a skipped path), then set Warden's.

// hasIdentity reports whether h (an http.Header or a metadata.MD) holds a header ids reserves.
func hasIdentity[M ~map[string][]string](h M, ids *idheader.Set) bool {
	for k := range h {
		if ids.Reserved(k) {
			return true
		}
	}
	return false
}

// deleteIdentity removes every header ids reserves from h, whatever the case of its name.
func deleteIdentity[M ~map[string][]string](h M, ids *idheader.Set) {
	for k := range h {
		if ids.Reserved(k) {
			delete(h, k)
		}
	}
}

// withoutIdentity is r, or a shallow copy of it without identity headers when it has some.
func withoutIdentity(r *http.Request, ids *idheader.Set) *http.Request {
	if !hasIdentity(r.Header, ids) {
		return r
	}
	r2 := r.Clone(r.Context())
	deleteIdentity(r2.Header, ids)
	return r2
}

// contextWithoutIdentity is ctx, or ctx with incoming metadata without identity headers when
// it has some.
func contextWithoutIdentity(ctx context.Context, ids *idheader.Set) context.Context {
	md, _ := metadata.FromIncomingContext(ctx) // a copy
	if !hasIdentity(md, ids) {
		return ctx
	}
	deleteIdentity(md, ids)
	return metadata.NewIncomingContext(ctx, md)
}
