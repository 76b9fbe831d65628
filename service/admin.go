package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/limiter"
)

// Admin implements AdminService. Every call authenticates the caller from the call's own
// metadata (authorization: Bearer …, or the API-key header) and needs one of the configured
// admin roles; every call is written to the audit log, never with a secret.
type Admin struct {
	wardenv1.UnimplementedAdminServiceServer
	srv    *Server
	reload func(ctx context.Context) (string, error)
	level  *slog.LevelVar
}

// NewAdmin returns the admin service sharing s's capabilities. reload re-reads the config
// file and returns its version (nil: ReloadConfig answers UNIMPLEMENTED).
func NewAdmin(s *Server, reload func(ctx context.Context) (string, error)) *Admin {
	return &Admin{srv: s, reload: reload}
}

// admin authenticates the caller and checks its roles.
func (a *Admin) admin(ctx context.Context, op string) (*Deps, authn.Principal, error) {
	d := a.srv.deps.Load()
	if d.Authn == nil {
		return nil, authn.Principal{}, unimplemented("AdminService needs authentication: configure the authn section")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	creds := &wardenv1.Credentials{Headers: map[string]string{}}
	for _, name := range []string{"authorization", d.Authn.apiKeyHeader()} {
		if vs := md.Get(name); len(vs) > 0 {
			creds.Headers[name] = vs[0]
			if len(vs) > 1 {
				creds.Headers[name] = "" // several values: malformed
			}
		}
	}
	p, reason := d.Authn.authenticate(ctx, creds)
	switch {
	case reason == authn.Unavailable:
		return nil, p, unavailable("an authentication backend")
	case reason != authn.OK:
		a.srv.audit.LogAttrs(ctx, slog.LevelWarn, "admin call refused", attrRPC(op), attrStr("reason", reason.String()))
		return nil, p, unauthenticated("admin credentials required")
	}
	for _, r := range p.Roles {
		if slices.Contains(d.Authn.AdminRoles, r) {
			a.srv.audit.LogAttrs(ctx, slog.LevelInfo, "admin call", attrRPC(op), attrStr("subject", p.Subject),
				attrStr("credential_id", p.CredentialID))
			return d, p, nil
		}
	}
	a.srv.audit.LogAttrs(ctx, slog.LevelWarn, "admin call refused", attrRPC(op), attrStr("subject", p.Subject), attrStr("reason", "not_admin"))
	return nil, p, permissionDenied("an admin role is required")
}

func (a *Authn) apiKeyHeader() string {
	return authn.ExtractConfig{APIKeyHeader: a.APIKeyHeader}.KeyHeader()
}

func (a *Admin) keys(ctx context.Context, op string) (*authn.APIKeys, error) {
	ac, err := a.authn(ctx, op)
	if err != nil {
		return nil, err
	}
	return ac.APIKeys, nil
}

// authn is keys, returning the whole authentication capability (its APIKeys set).
func (a *Admin) authn(ctx context.Context, op string) (*Authn, error) {
	d, _, err := a.admin(ctx, op)
	if err != nil {
		return nil, err
	}
	if d.Authn.APIKeys == nil {
		return nil, failedPrecondition("API keys are not enabled (authn.api_keys)")
	}
	return d.Authn, nil
}

// keyError maps key store errors.
func (a *Admin) keyError(ctx context.Context, op string, err error) error {
	switch {
	case errors.Is(err, authn.ErrKeyNotFound):
		return notFound("no such API key")
	case errors.Is(err, authn.ErrEmptyFilter):
		return invalidArgument("owner", "give an owner or a tenant")
	case errors.Is(err, authn.ErrReadOnlyKey):
		return failedPrecondition("this key is defined in the config file: change it there")
	}
	return internal(ctx, a.srv.log, op, err)
}

func (a *Admin) CreateApiKey(ctx context.Context, req *wardenv1.CreateApiKeyRequest) (*wardenv1.CreateApiKeyResponse, error) {
	ac, err := a.authn(ctx, "CreateApiKey")
	if err != nil {
		return nil, err
	}
	k := ac.APIKeys
	if req.GetOwner() == "" {
		return nil, invalidArgument("owner", "required")
	}
	if env := req.GetEnvironment(); env != wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_UNSPECIFIED && authn.Environment(env) != k.Env() {
		return nil, invalidArgument("environment", "this deployment issues "+k.Env().String()+" keys only")
	}
	spec := authn.KeySpec{Owner: req.GetOwner(), Tenant: req.GetTenant(), Roles: req.GetRoles(), Scopes: req.GetScopes(), Tier: req.GetTier()}
	if req.GetDescription() != "" {
		spec.Labels = map[string]string{"description": req.GetDescription()}
	}
	if !spec.Principal().Passable() {
		return nil, invalidArgument("roles", "owner, tenant, tier, roles and scopes may hold no control character, a role no comma, and a scope only RFC 6749 scope-token characters (they are passed on in identity headers)")
	}
	if t := req.GetTtl(); t != nil {
		if t.AsDuration() <= 0 {
			return nil, invalidArgument("ttl", "must be positive")
		}
		spec.ExpiresAt = a.srv.now().Add(t.AsDuration())
	}
	secret, rec, err := k.Create(ctx, spec)
	if err != nil {
		return nil, a.keyError(ctx, "CreateApiKey", err)
	}
	return &wardenv1.CreateApiKeyResponse{Key: keyToProto(rec), Secret: secret, Ephemeral: ac.EphemeralKeys}, nil
}

// maxImportBatch bounds the keys of one ImportApiKey call.
const maxImportBatch = 1000

func (a *Admin) ImportApiKey(ctx context.Context, req *wardenv1.ImportApiKeyRequest) (*wardenv1.ImportApiKeyResponse, error) {
	ac, err := a.authn(ctx, "ImportApiKey")
	if err != nil {
		return nil, err
	}
	k := ac.APIKeys
	if n := len(req.GetKeys()); n == 0 || n > maxImportBatch {
		return nil, invalidArgument("keys", "between 1 and 1000 keys")
	}
	resp := &wardenv1.ImportApiKeyResponse{Results: make([]*wardenv1.ImportApiKeyResult, len(req.GetKeys())), Ephemeral: ac.EphemeralKeys}
	imported := 0
	for i, ik := range req.GetKeys() {
		r := &wardenv1.ImportApiKeyResult{}
		resp.Results[i] = r
		spec := authn.KeySpec{Owner: ik.GetOwner(), Tenant: ik.GetTenant(), Roles: ik.GetRoles(), Scopes: ik.GetScopes(), Tier: ik.GetTier()}
		if ik.GetDescription() != "" {
			spec.Labels = map[string]string{"description": ik.GetDescription()}
		}
		if ik.GetExpiresAt() != nil {
			spec.ExpiresAt = ik.GetExpiresAt().AsTime()
		}
		rec, err := k.Import(ctx, ik.GetKey(), authn.Environment(ik.GetEnvironment()), spec)
		switch {
		case err == nil:
			r.Key = keyToProto(rec)
			imported++
		case ctx.Err() != nil:
			return nil, fromContext(ctx, err)
		case errors.Is(err, authn.ErrKeyExists):
			r.AlreadyExists, r.Error = true, "already stored"
		case authn.IsImportError(err):
			r.Error = strings.TrimPrefix(err.Error(), "authn: import API key: ") // never holds the key
		default:
			return nil, a.keyError(ctx, "ImportApiKey", err)
		}
	}
	a.srv.audit.LogAttrs(ctx, slog.LevelInfo, "api keys imported", attrRPC("ImportApiKey"),
		slog.Int("imported", imported), slog.Int("refused", len(req.GetKeys())-imported))
	return resp, nil
}

func (a *Admin) RotateApiKey(ctx context.Context, req *wardenv1.RotateApiKeyRequest) (*wardenv1.RotateApiKeyResponse, error) {
	k, err := a.keys(ctx, "RotateApiKey")
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, invalidArgument("id", "required")
	}
	grace := k.RotationGrace()
	if g := req.GetGrace(); g != nil {
		if err := g.CheckValid(); err != nil {
			return nil, invalidArgument("grace", "not a valid duration")
		}
		if grace = g.AsDuration(); grace < 0 || grace > k.RotationGrace() {
			return nil, invalidArgument("grace", fmt.Sprintf("must be between 0 and %v (authn.api_keys.rotation_grace)", k.RotationGrace()))
		}
	}
	secret, rec, err := k.RotateWithGrace(ctx, req.GetId(), grace)
	if err != nil {
		return nil, a.keyError(ctx, "RotateApiKey", err)
	}
	resp := &wardenv1.RotateApiKeyResponse{Key: keyToProto(rec), Secret: secret}
	if old, err := k.Store().Key(ctx, req.GetId()); err == nil && !old.RevokedAt.IsZero() {
		resp.OldKeyExpiresAt = timestamppb.New(old.RevokedAt)
	}
	return resp, nil
}

func (a *Admin) RevokeApiKey(ctx context.Context, req *wardenv1.RevokeApiKeyRequest) (*wardenv1.RevokeApiKeyResponse, error) {
	k, err := a.keys(ctx, "RevokeApiKey")
	if err != nil {
		return nil, err
	}
	if req.GetId() == "" {
		return nil, invalidArgument("id", "required")
	}
	if err := k.Revoke(ctx, req.GetId()); err != nil {
		return nil, a.keyError(ctx, "RevokeApiKey", err)
	}
	rec, err := k.Store().Key(ctx, req.GetId())
	if err != nil {
		return nil, a.keyError(ctx, "RevokeApiKey", err)
	}
	return &wardenv1.RevokeApiKeyResponse{Key: keyToProto(rec)}, nil
}

func (a *Admin) ListApiKeys(ctx context.Context, req *wardenv1.ListApiKeysRequest) (*wardenv1.ListApiKeysResponse, error) {
	k, err := a.keys(ctx, "ListApiKeys")
	if err != nil {
		return nil, err
	}
	if req.GetOwner() == "" && req.GetTenant() == "" {
		return nil, invalidArgument("owner", "give an owner or a tenant")
	}
	recs, err := k.Store().List(ctx, authn.KeyFilter{Owner: req.GetOwner(), Tenant: req.GetTenant()})
	if err != nil {
		return nil, a.keyError(ctx, "ListApiKeys", err)
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ID < recs[j].ID })
	// Pages are by id: the token is the last id of the previous page.
	size := int(req.GetPageSize())
	if size <= 0 || size > 500 {
		size = 100
	}
	resp := &wardenv1.ListApiKeysResponse{}
	for _, r := range recs {
		if r.ID <= req.GetPageToken() {
			continue
		}
		if len(resp.Keys) == size {
			resp.NextPageToken = resp.Keys[len(resp.Keys)-1].Id
			break
		}
		resp.Keys = append(resp.Keys, keyToProto(r))
	}
	return resp, nil
}

func (a *Admin) RevokeToken(ctx context.Context, req *wardenv1.RevokeTokenRequest) (*wardenv1.RevokeTokenResponse, error) {
	d, _, err := a.admin(ctx, "RevokeToken")
	if err != nil {
		return nil, err
	}
	if d.Authn.Revoker == nil {
		return nil, failedPrecondition("JWT authentication is not enabled (authn.jwt)")
	}
	if req.GetJti() == "" {
		return nil, invalidArgument("jti", "required")
	}
	if req.GetExpiresAt() == nil {
		return nil, invalidArgument("expires_at", "required: the token's exp")
	}
	if err := d.Authn.Revoker.Revoke(ctx, req.GetJti(), req.GetExpiresAt().AsTime()); err != nil {
		return nil, internal(ctx, a.srv.log, "RevokeToken", err)
	}
	return &wardenv1.RevokeTokenResponse{}, nil
}

func (a *Admin) limiter(ctx context.Context, op string, domain string, descs []*wardenv1.RateLimitDescriptor) (*limiter.Limiter, error) {
	d, _, err := a.admin(ctx, op)
	if err != nil {
		return nil, err
	}
	if d.Limiter == nil {
		return nil, failedPrecondition("rate limits are not configured (rate_limit)")
	}
	if domain == "" {
		return nil, invalidArgument("domain", "required")
	}
	if len(descs) == 0 || len(descs) > maxDescriptors {
		return nil, invalidArgument("descriptors", "between 1 and 64 descriptors")
	}
	return d.Limiter, nil
}

func entries(d *wardenv1.RateLimitDescriptor) []limiter.Entry {
	out := make([]limiter.Entry, len(d.GetEntries()))
	for i, e := range d.GetEntries() {
		out[i] = limiter.Entry{Key: e.GetKey(), Value: e.GetValue()}
	}
	return out
}

func (a *Admin) GetRateLimit(ctx context.Context, req *wardenv1.GetRateLimitRequest) (*wardenv1.GetRateLimitResponse, error) {
	l, err := a.limiter(ctx, "GetRateLimit", req.GetDomain(), req.GetDescriptors())
	if err != nil {
		return nil, err
	}
	resp := &wardenv1.GetRateLimitResponse{}
	for i, desc := range req.GetDescriptors() {
		st, err := l.Peek(ctx, req.GetDomain(), req.GetTier(), entries(desc))
		if err != nil {
			return nil, a.srv.limiterError(ctx, err)
		}
		if !st.Applied {
			continue
		}
		ps := &wardenv1.RateLimitStatus{Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK, Name: st.Name, Limit: st.Quota,
			Remaining: st.Remaining, ResetAfter: durationpb.New(st.ResetAfter), Window: durationpb.New(st.Limit.Period),
			DescriptorIndex: int32(i), Shadow: st.Shadow, Named: st.Named, QuotaMode: st.QuotaMode}
		if st.Code == limiter.CodeOverLimit {
			ps.Code = wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT
			ps.RetryAfter = durationpb.New(st.RetryAfter)
		}
		resp.Statuses = append(resp.Statuses, ps)
	}
	return resp, nil
}

func (a *Admin) ResetRateLimit(ctx context.Context, req *wardenv1.ResetRateLimitRequest) (*wardenv1.ResetRateLimitResponse, error) {
	l, err := a.limiter(ctx, "ResetRateLimit", req.GetDomain(), req.GetDescriptors())
	if err != nil {
		return nil, err
	}
	for _, desc := range req.GetDescriptors() {
		if err := l.Reset(ctx, req.GetDomain(), entries(desc)); err != nil {
			return nil, a.srv.limiterError(ctx, err)
		}
	}
	return &wardenv1.ResetRateLimitResponse{}, nil
}

func (a *Admin) ReloadConfig(ctx context.Context, _ *wardenv1.ReloadConfigRequest) (*wardenv1.ReloadConfigResponse, error) {
	if _, _, err := a.admin(ctx, "ReloadConfig"); err != nil {
		return nil, err
	}
	if a.reload == nil {
		return nil, failedPrecondition("Warden runs without a config file: nothing to reload")
	}
	v, err := a.reload(ctx)
	if err != nil {
		// The config error names the file and line; it is for the operator calling this.
		return nil, failedPrecondition("the config is invalid, the running one is kept: " + err.Error())
	}
	return &wardenv1.ReloadConfigResponse{Version: v}, nil
}

// WithLogLevel lets SetLogLevel change v, the process's log level (without it, SetLogLevel
// answers FAILED_PRECONDITION). It returns a.
func (a *Admin) WithLogLevel(v *slog.LevelVar) *Admin {
	a.level = v
	return a
}

func (a *Admin) SetLogLevel(ctx context.Context, req *wardenv1.SetLogLevelRequest) (*wardenv1.SetLogLevelResponse, error) {
	if _, _, err := a.admin(ctx, "SetLogLevel"); err != nil {
		return nil, err
	}
	if a.level == nil {
		return nil, failedPrecondition("this server's log level cannot be changed at run time")
	}
	prev := a.level.Level()
	if req.GetLevel() != "" {
		var l slog.Level
		switch req.GetLevel() {
		case "debug", "info", "warn", "error":
			_ = l.UnmarshalText([]byte(req.GetLevel()))
		default:
			return nil, invalidArgument("level", "must be debug, info, warn or error")
		}
		a.level.Set(l)
		a.srv.audit.LogAttrs(ctx, slog.LevelInfo, "log level changed", attrRPC("SetLogLevel"),
			attrStr("from", levelName(prev)), attrStr("to", levelName(l)))
	}
	return &wardenv1.SetLogLevelResponse{Level: levelName(a.level.Level()), Previous: levelName(prev)}, nil
}

// levelName is the config's spelling of l (debug, info, warn, error).
func levelName(l slog.Level) string {
	b, _ := l.MarshalText()
	return strings.ToLower(string(b))
}

func keyToProto(r authn.KeyRecord) *wardenv1.ApiKey {
	k := &wardenv1.ApiKey{Id: r.ID, Environment: wardenv1.ApiKeyEnvironment(r.Env), Owner: r.Owner, Tenant: r.Tenant,
		Roles: r.Roles, Scopes: r.Scopes, Tier: r.Tier, Description: r.Labels["description"], Imported: r.Imported}
	if !r.ExpiresAt.IsZero() {
		k.ExpiresAt = timestamppb.New(r.ExpiresAt)
	}
	if !r.CreatedAt.IsZero() {
		k.CreatedAt = timestamppb.New(r.CreatedAt)
	}
	if !r.LastUsedAt.IsZero() {
		k.LastUsedAt = timestamppb.New(r.LastUsedAt)
	}
	if !r.RevokedAt.IsZero() {
		k.RevokedAt = timestamppb.New(r.RevokedAt)
	}
	return k
}
