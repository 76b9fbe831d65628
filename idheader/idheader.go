// Package idheader names the identity headers: the request headers through which Warden tells
// an upstream who called (x-warden-subject, x-warden-tenant, …). It is the one definition the
// server (service), the Go middleware and interceptors (clients) and the Envoy adapter
// (clients/envoy) share, so that what one side sets the other side strips. It imports
// nothing, and knows nothing of how a header is carried (HTTP, gRPC metadata, Envoy).
//
// Every name under Prefix is Warden's alone: a request's own copies of them, in any case and
// however repeated, are removed before its handler runs, whether Warden allowed it, a cache
// answered, or Warden could not be asked and the caller failed open. That includes names
// Warden does not set today (x-warden-impersonate), so that a name added later is never
// spoofable in the meantime.
package idheader

import "strings"

// Prefix starts every identity header's name. Names are lower case, as HTTP/2, gRPC metadata
// and Envoy carry them.
const Prefix = "x-warden-"

// The headers Warden sets on an allowed request. An empty value is sent as a removal.
const (
	Subject      = Prefix + "subject"
	Tenant       = Prefix + "tenant"
	Roles        = Prefix + "roles"  // comma-separated
	Scopes       = Prefix + "scopes" // space-separated (RFC 6749 §3.3)
	Method       = Prefix + "auth-method"
	CredentialID = Prefix + "credential-id"
	Tier         = Prefix + "tier"
)

// Count is how many headers Warden sets: the length of Names.
const Count = 7

// Names returns the headers Warden sets, in the order above.
func Names() [Count]string {
	return [Count]string{Subject, Tenant, Roles, Scopes, Method, CredentialID, Tier}
}

// Reserved reports whether name, in any case, is an identity header's: whether it starts
// with Prefix. A request's own headers of such a name are never passed on.
func Reserved(name string) bool {
	return len(name) >= len(Prefix) && strings.EqualFold(name[:len(Prefix)], Prefix)
}
