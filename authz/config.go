package authz

import (
	"strconv"

	"github.com/wardenhq/warden/fielderr"
)

// Config is the `authz:` section of Warden's configuration. The zero value is a valid,
// closed policy: no role grants anything, tenant isolation is on and unknown routes are denied.
type Config struct {
	// Roles maps a role name to what it grants. Role names are what authn puts in
	// Principal.Roles; a principal's roles that are not listed here grant nothing.
	Roles map[string]RoleConfig `yaml:"roles"`
	// Ownership maps a resource type to the rule that ties its objects to an owner. Resource
	// types without a rule are not owned: role, scope and tenant checks alone decide.
	Ownership map[string]OwnershipConfig `yaml:"ownership"`
	// DisableTenantIsolation turns tenant isolation off. Default false: a principal reaches a
	// resource of another tenant only through a role with cross_tenant.
	DisableTenantIsolation bool `yaml:"disable_tenant_isolation"`
	// Routes is the route table for Check and the Envoy adapter. Default: none.
	Routes []RouteConfig `yaml:"routes"`
	// DefaultAllow lets an authenticated principal through a path no route matches. Default
	// false: such requests are denied with NoRoute. Unauthenticated requests are denied
	// either way. With it on, backends must route case-sensitively and reject what Warden
	// rejects, or the default becomes a bypass.
	DefaultAllow bool `yaml:"default_allow"`
	// TrailingSlash is "strip" (default: `/v1/users/` matches `/v1/users`) or "strict" (a
	// trailing slash makes the path malformed).
	TrailingSlash string `yaml:"trailing_slash"`
	// MaxPathLength caps the request path in bytes, query excluded. Default 2048.
	MaxPathLength int `yaml:"max_path_length"`
	// MaxSegments caps the number of path segments. Default 32.
	MaxSegments int `yaml:"max_segments"`
	// MaxIDLength caps resource ids, owners and tenants in bytes. Default 256.
	MaxIDLength int `yaml:"max_id_length"`
}

// Defaults of Config.
const (
	DefaultMaxPathLength = 2048
	DefaultMaxSegments   = 32
	DefaultMaxIDLength   = 256
)

// RoleConfig is one role.
type RoleConfig struct {
	// Inherits lists roles whose grants (permissions, conditional permissions, cross-tenant
	// access, ownership overrides) this role also has. Cycles are an error.
	Inherits []string `yaml:"inherits"`
	// Permissions are `resource:verb`, `resource:*`, `*:verb` or `*`.
	Permissions []string `yaml:"permissions"`
	// Conditional permissions apply only when their CEL condition is true.
	Conditional []ConditionalPermission `yaml:"conditional"`
	// CrossTenant lets the role reach resources of any tenant.
	CrossTenant bool `yaml:"cross_tenant"`
}

// ConditionalPermission grants Permission when the CEL expression When is true. When sees
// `principal.*`, `resource.*` and `request.*` (see the package's condition variables).
type ConditionalPermission struct {
	Permission string `yaml:"permission"`
	When       string `yaml:"when"`
}

// OwnershipConfig ties a resource type to its owner: ResourceField of the resource must equal
// PrincipalField of the principal, unless one of the principal's roles overrides it for the
// action's verb. Empty values on either side never match.
type OwnershipConfig struct {
	// ResourceField is resource.owner (default), resource.id, or resource.attributes.<key>.
	// Routes cannot supply attributes, so a route to a type owned through an attribute must
	// set skip_ownership and leave the check to the backend's Authorize call.
	ResourceField string `yaml:"resource_field"`
	// PrincipalField is principal.subject (default), principal.tenant,
	// principal.credential_id or principal.claims.<key>.
	PrincipalField string `yaml:"principal_field"`
	// Overrides lists roles that bypass ownership for some verbs.
	Overrides []OverrideConfig `yaml:"overrides"`
	// When is an optional CEL condition every request on this resource type must meet,
	// evaluated after the tenant and ownership checks. Overrides do not bypass it.
	When string `yaml:"when"`
}

// OverrideConfig lets Role (and every role that inherits it) bypass ownership for Verbs.
// Verbs must be given: ["*"] means every verb.
type OverrideConfig struct {
	Role  string   `yaml:"role"`
	Verbs []string `yaml:"verbs"`
}

// errs collects field errors (paths such as `authz.roles.support.permissions[1]`, so that a
// loader holding the YAML nodes can name the line); Compile returns them as a fielderr.List.
type errs fielderr.List

func (e *errs) add(path, format string, args ...any) { (*fielderr.List)(e).Addf(path, format, args...) }

func (e *errs) addErr(path string, err error) { (*fielderr.List)(e).Add(path, err) }

func (e errs) err() error { return fielderr.List(e).Err() }

func idx(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }
