// Package authz decides whether an authenticated principal may perform an action on a
// resource: roles grant permissions, `resource:verb` scopes on the credential narrow them,
// plain OAuth 2.0 scopes (`read`) can be required by name (ScopeRequirement), ownership rules
// tie a resource to its owner, tenant isolation keeps tenants apart, and optional CEL conditions
// refine any of these. A route table maps an HTTP method and path to the action, the resource
// and the limits to apply, for callers (the Envoy ext_authz adapter, the one-call Check) that
// only see a request line.
//
// It knows nothing of gRPC, protobuf, Envoy or HTTP libraries: it takes plain Go values and
// returns plain Go values. It never reads headers or bodies: ownership comes only from the
// verified principal and from the resource the caller looked up or the route's path
// parameters, so a client cannot claim an owner.
//
// A Config (the `authz:` section of Warden's YAML) is compiled once into an immutable *Policy
// that is safe for concurrent use; on reload the caller compiles the new Config and swaps the
// pointer (for example with atomic.Pointer[Policy]), keeping the old one when Compile fails.
//
//	pol, err := authz.Compile(authz.Config{
//		Roles: map[string]authz.RoleConfig{
//			"customer": {Permissions: []string{"orders:read", "orders:write"}},
//			"support":  {Permissions: []string{"*:read"}, CrossTenant: true},
//		},
//		Ownership: map[string]authz.OwnershipConfig{
//			"orders": {Overrides: []authz.OverrideConfig{{Role: "support", Verbs: []string{"read"}}}},
//		},
//	})
//	if err != nil {
//		return err // each error names its field, e.g. authz.roles.support.permissions[0]
//	}
//	d := pol.Authorize(principal, "orders:read", authz.Resource{Type: "orders", ID: "o-1", Owner: "alice", Tenant: "acme"})
//	if !d.Allowed {
//		auditor.Record(ctx, principal, "orders:read", res, d) // the detailed reason, to the audit log
//		return d.Reason.Public()                               // the generic reason, to the client
//	}
package authz
