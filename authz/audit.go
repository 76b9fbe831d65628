package authz

import (
	"context"
	"log/slog"

	"github.com/wardenhq/warden/authn"
)

// Auditor writes one audit record per denial to an injected logger: who (subject, tenant,
// credential kind and id), what (action, resource type, id and tenant, or method and path),
// and the detailed and public reasons. It never logs credentials, scopes or claims, drops the
// query string (where clients sometimes put secrets), and truncates long values. Allowed
// decisions are not logged. The zero value logs nothing; an Auditor is safe for concurrent use.
type Auditor struct {
	log *slog.Logger
}

// NewAuditor returns an Auditor writing to log at level Warn. A nil log discards.
func NewAuditor(log *slog.Logger) *Auditor { return &Auditor{log: log} }

// maxAuditValue caps each logged value: ids are attacker-chosen.
const maxAuditValue = 256

// Record logs a denial from Authorize.
func (a *Auditor) Record(ctx context.Context, p authn.Principal, action string, res Resource, d Decision) {
	if d.Allowed || a == nil || a.log == nil || !a.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "authz denied",
		slog.String("subject", trunc(p.Subject)),
		slog.String("tenant", trunc(p.Tenant)),
		slog.String("credential_method", p.Method.String()),
		slog.String("credential_id", trunc(p.CredentialID)),
		slog.String("action", trunc(action)),
		slog.String("resource_type", trunc(res.Type)),
		slog.String("resource_id", trunc(res.ID)),
		slog.String("resource_tenant", trunc(res.Tenant)),
		slog.String("reason", d.Reason.String()),
		slog.String("public_reason", d.Reason.Public().String()),
	)
}

// RecordCheck logs a denial from Check; ps is what Check filled.
func (a *Auditor) RecordCheck(ctx context.Context, p authn.Principal, method, path string, ps *Params, d Decision) {
	if d.Allowed || a == nil || a.log == nil || !a.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	for i := 0; i < len(path); i++ {
		if path[i] == '?' {
			path = path[:i]
			break
		}
	}
	attrs := []slog.Attr{
		slog.String("subject", trunc(p.Subject)),
		slog.String("tenant", trunc(p.Tenant)),
		slog.String("credential_method", p.Method.String()),
		slog.String("credential_id", trunc(p.CredentialID)),
		slog.String("method", trunc(method)),
		slog.String("path", trunc(path)),
		slog.String("reason", d.Reason.String()),
		slog.String("public_reason", d.Reason.Public().String()),
	}
	if r := ps.Route(); r != nil {
		res := r.Resource(ps)
		attrs = append(attrs,
			slog.String("route", r.Name),
			slog.String("action", r.Action),
			slog.String("resource_type", r.ResourceType),
			slog.String("resource_id", trunc(res.ID)),
			slog.String("resource_tenant", trunc(res.Tenant)),
		)
	}
	a.log.LogAttrs(ctx, slog.LevelWarn, "authz denied", attrs...)
}

func trunc(s string) string {
	if len(s) > maxAuditValue {
		return s[:maxAuditValue] + "…"
	}
	return s
}
