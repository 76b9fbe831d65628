package authz

import (
	"fmt"
	"strings"

	"github.com/wardenhq/warden/authn"
)

// RouteConfig maps a method and a path template or prefix to what a request there means.
//
// Path templates are absolute paths of segments separated by single slashes: literal segments
// (RFC 3986 path characters except `%`, `;` and `*`), whole-segment parameters `{name}`, and a
// final catch-all `{name...}` that matches one or more remaining segments. `/v1/{id}.json`
// (a parameter inside a segment) is not supported.
//
// A prefix is literal segments only, with or without a final slash (`/api/` and `/api` are
// the same prefix). It matches whole segments: `/api/` matches `/api`, `/api/` and
// `/api/v1/x`, never `/apikeys`; `/` matches every path. See RouteTable for precedence.
type RouteConfig struct {
	// Name identifies the route in logs, metrics and rate-limit descriptors. Required, unique.
	Name string `yaml:"name"`
	// Method is an HTTP method in upper case, or "*" for any method. A GET route also serves
	// HEAD requests that no HEAD route matches.
	Method string `yaml:"method"`
	// Path is the template, e.g. /v1/users/{user_id}/orders/{order_id}. Set exactly one of
	// Path and Prefix.
	Path string `yaml:"path"`
	// Prefix is a path prefix, e.g. /api/. A prefix route has no path parameters.
	Prefix string `yaml:"prefix"`
	// Action is the `resource:verb` to authorize. Required unless Public, Webhook or Scopes
	// is set. A route with Scopes and no Action is decided by the scopes alone (after
	// authentication and AllowedMethods): no role, resource or ownership check.
	Action string `yaml:"action"`
	// ResourceType defaults to the action's resource part.
	ResourceType string `yaml:"resource_type"`
	// OwnerParam, TenantParam and IDParam name the path parameters that hold the resource's
	// owner, tenant and id. A route to a resource type with an ownership rule must name the
	// parameter the rule compares (or set SkipOwnership).
	OwnerParam  string `yaml:"owner_param"`
	TenantParam string `yaml:"tenant_param"`
	IDParam     string `yaml:"id_param"`
	// SkipOwnership turns the ownership check off for this route: for collection routes whose
	// backend scopes results to the caller, or when the backend calls Authorize itself with the
	// object it loaded. Default false.
	SkipOwnership bool `yaml:"skip_ownership"`
	// Scopes requires plain OAuth 2.0 scopes by exact, case-sensitive match:
	// `scopes: {any_of: [read, admin]}` and/or `all_of`. A credential without scopes fails it.
	Scopes ScopeRequirement `yaml:"scopes"`
	// RequiredScopes must each be covered by the credential's scopes, when it has any: equal,
	// or covered by a `resource:*`/`*:verb`/`*` scope. Kept for the permission model; plain
	// scopes are better required with Scopes.
	RequiredScopes []string `yaml:"required_scopes"`
	// AllowedMethods lists the credential kinds accepted: api_key, jwt, mtls, oauth2. Default: all.
	AllowedMethods []string `yaml:"allowed_methods"`
	// RateLimits are the descriptors to check for requests on this route.
	RateLimits []RateLimitConfig `yaml:"rate_limits"`
	// StripHeaders lists request headers to remove before the request goes upstream.
	StripHeaders []string `yaml:"strip_headers"`
	// Public routes need no authentication and are not authorized. Default false.
	Public bool `yaml:"public"`
	// Webhook names the webhook source whose signature authenticates requests on this route.
	Webhook string `yaml:"webhook"`
}

// RateLimitConfig is one rate-limit descriptor: a domain and an ordered list of entries.
type RateLimitConfig struct {
	Domain      string             `yaml:"domain"`
	Descriptors []DescriptorConfig `yaml:"descriptors"`
}

// DescriptorConfig is one descriptor entry: Key with either a literal Value or a value taken
// From principal.subject, principal.tenant, principal.tier, route.name, param.<name> or
// header.<name>.
type DescriptorConfig struct {
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
	From  string `yaml:"from"`
}

// ValueSource says where a descriptor entry's value comes from.
type ValueSource uint8

const (
	FromLiteral ValueSource = iota
	FromPrincipalSubject
	FromPrincipalTenant
	FromPrincipalTier
	FromRouteName
	FromParam
	FromHeader
)

// RateLimitSpec is a compiled RateLimitConfig. It is data: the limiter's caller resolves it.
type RateLimitSpec struct {
	Domain  string
	Entries []DescriptorSpec
}

// DescriptorSpec is a compiled DescriptorConfig. Value is the literal for FromLiteral; Name is
// the parameter (FromParam, with its index in Params as ParamIndex) or the lower-case header
// name (FromHeader).
type DescriptorSpec struct {
	Key        string
	Source     ValueSource
	Value      string
	Name       string
	ParamIndex int
}

// Route is a compiled RouteConfig. Routes returned by Match are shared by every request and
// must be treated as read-only.
type Route struct {
	Name, Method, Path, Action, ResourceType string
	// Prefix is set instead of Path for a prefix route, with its final slash removed
	// (`/api`; the root prefix is `/`).
	Prefix                           string
	OwnerParam, TenantParam, IDParam string
	SkipOwnership                    bool
	Scopes                           ScopeRequirement
	RequiredScopes                   []string
	AllowedMethods                   []authn.Method
	RateLimits                       []RateLimitSpec
	StripHeaders                     []string
	Public                           bool
	Webhook                          string
	// ParamNames are the template's parameters in path order; Params values follow it.
	ParamNames []string

	methods                    uint32 // bit per authn.Method; 0 = all
	ownerIdx, tenantIdx, idIdx int    // -1 when absent
}

// Resource builds the resource a request on this route is about from the route and its path
// parameters only: never from headers or bodies.
func (r *Route) Resource(ps *Params) Resource {
	return Resource{Type: r.ResourceType, ID: ps.at(r.idIdx), Owner: ps.at(r.ownerIdx), Tenant: ps.at(r.tenantIdx)}
}

func (r *Route) allowsMethod(m authn.Method) bool {
	return r.methods == 0 || r.methods&(1<<m) != 0
}

// MaxParams is the most parameters a path template may have.
const MaxParams = 8

// Params receives the path parameters of a match: fixed slots, so Match does not allocate.
// The zero value is ready; reuse one per request (it is not safe for concurrent use).
// Values are percent-decoded; a value is a substring of the request path unless it had to be
// decoded.
type Params struct {
	route *Route
	n     int
	vals  [MaxParams]string
}

// Route returns the matched route, or nil.
func (ps *Params) Route() *Route { return ps.route }

// Len returns the number of parameters.
func (ps *Params) Len() int { return ps.n }

// Value returns the i-th parameter (in Route.ParamNames order).
func (ps *Params) Value(i int) string { return ps.at(i) }

// Get returns the value of the named parameter, or "".
func (ps *Params) Get(name string) string {
	if ps.route == nil {
		return ""
	}
	for i, n := range ps.route.ParamNames {
		if n == name {
			return ps.at(i)
		}
	}
	return ""
}

func (ps *Params) at(i int) string {
	if i < 0 || i >= ps.n {
		return ""
	}
	return ps.vals[i]
}

func (ps *Params) reset() { *ps = Params{} }

type segKind uint8

const (
	segLiteral segKind = iota
	segParam
	segCatchAll
)

type segment struct {
	kind segKind
	text string // literal text or parameter name
}

// parseTemplate parses a path template. See RouteConfig for the syntax.
func parseTemplate(t string, maxSeg int) ([]segment, error) {
	if t == "" || t[0] != '/' {
		return nil, fmt.Errorf("%q: a path template starts with /", t)
	}
	if t == "/" {
		return nil, nil
	}
	parts := strings.Split(t[1:], "/")
	if len(parts) > maxSeg {
		return nil, fmt.Errorf("%q: more than %d segments", t, maxSeg)
	}
	segs := make([]segment, 0, len(parts))
	seen := map[string]bool{}
	for i, s := range parts {
		switch {
		case s == "":
			return nil, fmt.Errorf("%q: empty segment (double or trailing slash)", t)
		case s[0] == '{':
			if s[len(s)-1] != '}' || len(s) < 3 {
				return nil, fmt.Errorf("%q: segment %q: a parameter is a whole segment {name} or {name...}", t, s)
			}
			name, kind := s[1:len(s)-1], segParam
			if n, ok := strings.CutSuffix(name, "..."); ok {
				if i != len(parts)-1 {
					return nil, fmt.Errorf("%q: catch-all %s must be the last segment", t, s)
				}
				name, kind = n, segCatchAll
			}
			if !validParamName(name) {
				return nil, fmt.Errorf("%q: parameter name %q must match [A-Za-z_][A-Za-z0-9_]*", t, name)
			}
			if seen[name] {
				return nil, fmt.Errorf("%q: parameter %q appears twice", t, name)
			}
			seen[name] = true
			if len(seen) > MaxParams {
				return nil, fmt.Errorf("%q: more than %d parameters", t, MaxParams)
			}
			segs = append(segs, segment{kind: kind, text: name})
		default:
			if s == "." || s == ".." {
				return nil, fmt.Errorf("%q: dot segment %q", t, s)
			}
			for j := 0; j < len(s); j++ {
				if !isLiteralChar(s[j]) {
					return nil, fmt.Errorf("%q: segment %q: character %q is not allowed in a literal (use {name} or {name...} for parameters)", t, s, s[j])
				}
			}
			segs = append(segs, segment{kind: segLiteral, text: s})
		}
	}
	return segs, nil
}

// parsePrefix parses a route prefix: literal segments only, an optional final slash.
func parsePrefix(p string, maxSeg int) ([]segment, error) {
	t := p
	if len(t) > 1 && t[len(t)-1] == '/' {
		if t = t[:len(t)-1]; t == "/" {
			return nil, fmt.Errorf("prefix %q: empty segment (double slash)", p)
		}
	}
	segs, err := parseTemplate(t, maxSeg)
	if err != nil {
		return nil, fmt.Errorf("prefix %s", err)
	}
	for _, s := range segs {
		if s.kind != segLiteral {
			return nil, fmt.Errorf("prefix %q: parameters are for path templates; a prefix is literal segments", p)
		}
	}
	return segs, nil
}

func validParamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// isLiteralChar: RFC 3986 pchar without pct-encoding, `;` (path parameters on some servers)
// and `*`.
func isLiteralChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()+,=:@", c) >= 0
}
