// Package service implements Warden's gRPC API (warden.v1.WardenService and AdminService):
// it turns protobuf requests into plain Go values for limiter, authn and authz, turns their
// answers back into responses, and maps failures to canonical gRPC codes in one place.
//
// It never imports a concrete store or reads configuration: cmd/warden builds the
// capabilities and passes them in as Deps, and swaps them whole on a config reload.
package service

import (
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/limiter"
)

// Deps are the capabilities the server answers with, built from one version of the config.
// A nil capability makes its RPCs answer UNIMPLEMENTED with a message naming what is missing.
// Deps are immutable once passed to SetDeps.
type Deps struct {
	// Version identifies the config the Deps were built from.
	Version string
	// Webhooks verifies VerifyWebhook requests.
	Webhooks *webhook.Verifier
	// Policy answers Authorize and holds the route table for Check; Auditor logs its
	// denials.
	Policy  *authz.Policy
	Auditor *authz.Auditor
	// Limiter answers CheckRateLimit and the rate-limit step of Check.
	Limiter *limiter.Limiter
	// Authn answers Authenticate and the authentication step of Authorize and Check.
	Authn *Authn
	// WebhookReplayStatus is the HTTP status with which Check refuses a replayed webhook
	// delivery: 409 Conflict (0 means 409), or 200 so that a sender stops retrying. Either
	// way the denial's gRPC status through ext_authz is ALREADY_EXISTS.
	WebhookReplayStatus int32
	// Headers names the identity headers and chooses the rate-limit headers' flavour in
	// Check answers. The zero value: x-warden-* and the IETF draft's headers.
	Headers HeaderNames
}

// HeaderNames names the headers of Check answers, and so of the ext_authz answers made from
// them.
type HeaderNames struct {
	// Identity names the identity headers set on an allowed request; every request header
	// it reserves is removed. The zero Set means idheader.Default() (x-warden-*).
	Identity idheader.Set
	// RateLimit chooses the rate-limit headers of Check and CheckRateLimit answers: the IETF
	// draft's (the zero value), X-RateLimit-*, or both.
	RateLimit limiter.HeaderStyle
}

// Config configures a Server. The zero value is usable: no capabilities, slog.Default, and
// time.Now.
type Config struct {
	Logger *slog.Logger
	Now    func() time.Time
	Deps   *Deps
	// MaxHeaders and MaxHeaderBytes (names and values) bound the headers of one request;
	// more, or a name or value with NUL, CR or LF, is INVALID_ARGUMENT before any other
	// work. Defaults DefaultMaxHeaders and DefaultMaxHeaderBytes.
	MaxHeaders, MaxHeaderBytes int
	// Tracer, when set, gives a sampled call spans for its decision (Authenticate,
	// CheckRateLimit, Check) and for Check's steps (target, authenticate, permit, limits,
	// allow), children of the span in the call's context. An unsampled call starts none
	// and allocates nothing for them. Nil: no spans.
	Tracer trace.Tracer
}

// Server implements WardenService. Create it with New; it is safe for concurrent use, and
// SetDeps may be called while requests are served.
type Server struct {
	wardenv1.UnimplementedWardenServiceServer

	log     *slog.Logger
	audit   *slog.Logger
	now     func() time.Time
	deps    atomic.Pointer[Deps]
	headers headerLimits
	tracer  trace.Tracer
}

// AuditVersion is the version of the audit log's schema (docs/audit-log.md), written on
// every audit line as audit_version. It changes only when a field is removed or changes
// meaning; new fields and new events keep it.
const AuditVersion = 1

// New returns a Server.
func New(c Config) *Server {
	s := &Server{log: c.Logger, now: c.Now, headers: headerLimits{c.MaxHeaders, c.MaxHeaderBytes}, tracer: c.Tracer}
	if s.headers.count <= 0 {
		s.headers.count = DefaultMaxHeaders
	}
	if s.headers.bytes <= 0 {
		s.headers.bytes = DefaultMaxHeaderBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.audit = s.log.With("log", "audit", "audit_version", AuditVersion)
	d := c.Deps
	if d == nil {
		d = &Deps{}
	}
	s.deps.Store(s.complete(d))
	return s
}

// SetDeps swaps the capabilities atomically: requests already running finish with the old
// ones, new requests see the new ones.
func (s *Server) SetDeps(d *Deps) { s.deps.Store(s.complete(d)) }

// complete fills what a Deps built in code may leave out.
func (s *Server) complete(d *Deps) *Deps {
	if (d.Policy != nil && d.Auditor == nil) || d.Headers.Identity.IsZero() {
		c := *d
		if c.Policy != nil && c.Auditor == nil {
			c.Auditor = authz.NewAuditor(s.audit)
		}
		if c.Headers.Identity.IsZero() {
			c.Headers.Identity = idheader.Default()
		}
		return &c
	}
	return d
}

// Deps returns the current capabilities.
func (s *Server) Deps() *Deps { return s.deps.Load() }
