package authz

// Reason says why a decision was made. The detailed reason belongs in the audit log; what a
// client is told is Reason.Public, which does not reveal which check failed.
type Reason uint8

const (
	// OK: the request is allowed.
	OK Reason = iota
	// NoCredentials: no principal (zero Subject) where one is required.
	NoCredentials
	// MissingScope: the credential's scopes do not cover the action or a scope the route requires.
	MissingScope
	// MissingRole: no role of the principal grants the action.
	MissingRole
	// NotOwner: the resource belongs to someone else and no role overrides ownership.
	NotOwner
	// OtherTenant: the resource belongs to another tenant (or the principal has none).
	OtherTenant
	// NoRoute: no route matches the method and path, and the table denies by default.
	NoRoute
	// ConditionFailed: a CEL condition on the permission or the ownership rule was not met.
	ConditionFailed
	// MalformedResource: a resource type, id, owner or tenant is empty where required, too
	// long, or holds path separators, dot segments or control characters.
	MalformedResource
	// MalformedRequest: the action is not `resource:verb`, or the path is not acceptable
	// (dot segments, empty segments, encoded slashes, bad percent-encoding, too long).
	MalformedRequest
	// CredentialNotAllowed: the route does not accept this kind of credential (api_key, jwt, …).
	CredentialNotAllowed
	// WebhookUnverified: the route is a webhook endpoint; authz does not decide it. The caller
	// must verify the signature for Route.Webhook and allow the request only if it is valid.
	WebhookUnverified
)

var reasonNames = [...]string{
	OK:                   "ok",
	NoCredentials:        "no_credentials",
	MissingScope:         "missing_scope",
	MissingRole:          "missing_role",
	NotOwner:             "not_owner",
	OtherTenant:          "other_tenant",
	NoRoute:              "no_route",
	ConditionFailed:      "condition_failed",
	MalformedResource:    "malformed_resource",
	MalformedRequest:     "malformed_request",
	CredentialNotAllowed: "credential_not_allowed",
	WebhookUnverified:    "webhook_unverified",
}

// String returns the snake_case name used in logs and metrics.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// PublicReason is what a client may be told. NotOwner, OtherTenant and NoRoute all become
// PublicNotFound, the same answer the application gives for an object that does not exist, so
// a caller cannot probe which ids exist in other tenants or belong to other users.
type PublicReason uint8

const (
	PublicOK              PublicReason = iota // 200
	PublicUnauthenticated                     // 401: no or unsuitable credentials
	PublicForbidden                           // 403: the caller may not do this kind of action at all
	PublicNotFound                            // 404: the object is not there for this caller
	PublicInvalid                             // 400: the request or the resource id is malformed
)

var publicNames = [...]string{"ok", "unauthenticated", "forbidden", "not_found", "invalid"}

var publicStatus = [...]int{200, 401, 403, 404, 400}

// String returns the snake_case name.
func (p PublicReason) String() string {
	if int(p) < len(publicNames) {
		return publicNames[p]
	}
	return "unknown"
}

// HTTPStatus returns the HTTP status code a client should see.
func (p PublicReason) HTTPStatus() int {
	if int(p) < len(publicStatus) {
		return publicStatus[p]
	}
	return 403
}

// Public maps a detailed reason to what the client may see. Checks that depend on the object
// (ownership, tenant) and a missing route map to PublicNotFound; checks that depend only on the
// caller and the kind of action (roles, scopes) map to PublicForbidden. ConditionFailed maps
// to PublicForbidden: conditions run after the tenant and ownership checks, so a caller who
// reaches them may already know the object exists. Unknown values map to PublicForbidden.
func (r Reason) Public() PublicReason {
	switch r {
	case OK:
		return PublicOK
	case NoCredentials, CredentialNotAllowed, WebhookUnverified:
		return PublicUnauthenticated
	case NotOwner, OtherTenant, NoRoute:
		return PublicNotFound
	case MalformedResource, MalformedRequest:
		return PublicInvalid
	default:
		return PublicForbidden
	}
}

// Decision is the outcome of an authorization check. It is a small value: the hot path
// returns it without allocating.
type Decision struct {
	Allowed bool
	Reason  Reason
}

func allow() Decision        { return Decision{Allowed: true, Reason: OK} }
func deny(r Reason) Decision { return Decision{Reason: r} }
