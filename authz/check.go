package authz

import "github.com/wardenhq/warden/authn"

// Match finds the route for a request; see RouteTable.Match.
func (pl *Policy) Match(method, path string, ps *Params) (*Route, Reason) {
	return pl.routes.Match(method, path, ps)
}

// Routes returns the compiled route table.
func (pl *Policy) Routes() *RouteTable { return &pl.routes }

// Check authorizes a request line: it matches method and path (query ignored), then
// authorizes p for the route's action on the resource built from the path parameters alone.
// A zero principal (empty Subject) means the request carried no credentials. ps receives the
// route and its parameters (for rate-limit descriptors and the audit log); it is reset first.
//
//   - malformed path: MalformedRequest
//   - no route: NoRoute, or with DefaultAllow, OK for an authenticated principal
//   - public route: OK, whoever calls
//   - webhook route: WebhookUnverified; the caller verifies the signature for Route.Webhook
//     and allows the request only when it is valid
//   - otherwise: NoCredentials, CredentialNotAllowed, MissingScope (the route's Scopes, then
//     its RequiredScopes), then Authorize's checks; a route with Scopes and no Action allows
//     once its scopes are met
//
// Headers and bodies are not inputs: nothing a client sends besides the path and the
// credential can change whose object the request is about.
func (pl *Policy) Check(p authn.Principal, method, path string, ps *Params) Decision {
	r, reason := pl.routes.Match(method, path, ps)
	if reason == MalformedRequest {
		return deny(MalformedRequest)
	}
	return pl.CheckRoute(p, r, ps)
}

// CheckRoute is Check for a request Match has already matched: r is the route it found (nil
// when none matched) and ps its parameters. Callers that need the route before authorizing
// (to pick the credential, or verify a webhook) match once and call this.
func (pl *Policy) CheckRoute(p authn.Principal, r *Route, ps *Params) Decision {
	switch {
	case r == nil && pl.defaultAllow && p.Subject != "":
		return allow()
	case r == nil && pl.defaultAllow:
		return deny(NoCredentials)
	case r == nil:
		return deny(NoRoute)
	case r.Public:
		return allow()
	case r.Webhook != "":
		return deny(WebhookUnverified)
	case p.Subject == "":
		return deny(NoCredentials)
	case !r.allowsMethod(p.Method):
		return deny(CredentialNotAllowed)
	case !r.Scopes.SatisfiedBy(p.Scopes):
		return deny(MissingScope)
	}
	if p.Scopes != nil {
		for _, s := range r.RequiredScopes {
			if !scopeCovers(p.Scopes, s) {
				return deny(MissingScope)
			}
		}
	}
	if r.Action == "" {
		return allow() // decided by its scopes alone (Compile allows no other route without an action)
	}
	res := r.Resource(ps)
	return pl.authorize(&p, r.Action, &res, r.Name, r.SkipOwnership)
}

// scopeCovers reports whether one of the credential's scopes covers required scope s: equal,
// or a permission wildcard covering it when s is `resource:verb`.
func scopeCovers(scopes []string, s string) bool {
	rt, verb, ok := splitAction(s)
	for _, have := range scopes {
		if have == s || ok && covers(have, s, rt, verb) {
			return true
		}
	}
	return false
}
