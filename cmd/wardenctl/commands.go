package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

func commands() []command {
	return []command{
		{"keys generate", "make a key offline for the config's static list (prints the key once, and the YAML entry)", keysGenerate},
		{"keys create", "create an API key (the secret is printed once)", keysCreate},
		{"keys import", "import keys Warden did not issue from a CSV or JSONL file (key, owner, tenant, roles, scopes, tier, expires)", keysImport},
		{"keys digest", "print the config entry of an imported key read from stdin (its digest only)", keysDigest},
		{"keys rotate", "issue a new key; the old one stays valid for the grace period", keysRotate},
		{"keys revoke", "revoke a key on every replica", keysRevoke},
		{"keys list", "list keys by owner or tenant", keysList},
		{"tokens revoke", "revoke a JWT by jti until its exp", tokensRevoke},
		{"limits get", "read rate-limit counters without consuming", limitsGet},
		{"limits reset", "reset rate-limit counters", limitsReset},
		{"webhook sign", "sign a body as a webhook sender would and print the headers", webhookSign},
		{"webhook verify", "verify a webhook delivery locally", webhookVerify},
		{"check", "ask Warden for a decision on an HTTP request (dry run of Check) and print why", check},
	}
}

func admin(c *cli) (wardenv1.AdminServiceClient, error) {
	cc, err := c.dial()
	if err != nil {
		return nil, err
	}
	return wardenv1.NewAdminServiceClient(cc), nil
}

func keysCreate(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys create", c)
	env := fs.String("env", "live", "live or test")
	owner := fs.String("owner", "", "owner (the principal's subject)")
	tenant := fs.String("tenant", "", "tenant")
	roles := fs.String("roles", "", "comma-separated roles")
	scopes := fs.String("scopes", "", "comma-separated scopes")
	tier := fs.String("tier", "", "rate-limit tier")
	ttl := fs.Duration("ttl", 0, "lifetime (0: no expiry)")
	desc := fs.String("description", "", "free text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var e wardenv1.ApiKeyEnvironment
	switch *env {
	case "live":
		e = wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_LIVE
	case "test":
		e = wardenv1.ApiKeyEnvironment_API_KEY_ENVIRONMENT_TEST
	default:
		return fmt.Errorf("-env must be live or test, not %q", *env)
	}
	if *owner == "" {
		return fmt.Errorf("-owner is required")
	}
	req := &wardenv1.CreateApiKeyRequest{Environment: e, Owner: *owner, Tenant: *tenant,
		Roles: splitList(*roles), Scopes: splitList(*scopes), Tier: *tier, Description: *desc}
	if *ttl > 0 {
		req.Ttl = durationpb.New(*ttl)
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := a.CreateApiKey(cctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, "The secret below is shown once. Store it now.")
	if resp.GetEphemeral() {
		fmt.Fprintln(c.stderr, ephemeralWarning)
	}
	return c.print(resp)
}

// ephemeralWarning is written on stderr when Warden answers that it keeps keys in memory only.
const ephemeralWarning = "warning: this Warden keeps API keys in memory only (no Redis): they vanish when it restarts, and other replicas do not know them."

func keysRotate(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys rotate", c)
	id := fs.String("id", "", "key id")
	grace := fs.Duration("grace", 0, "how long the old key stays valid, from 0 (it stops at once) to the server's authn.api_keys.rotation_grace (the default when -grace is not given)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("-id is required")
	}
	req := &wardenv1.RotateApiKeyRequest{Id: *id}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "grace" {
			req.Grace = durationpb.New(*grace)
		}
	})
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := a.RotateApiKey(cctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stderr, "The new secret below is shown once. Store it now.")
	return c.print(resp)
}

func keysRevoke(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys revoke", c)
	id := fs.String("id", "", "key id")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("-id is required")
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := a.RevokeApiKey(cctx, &wardenv1.RevokeApiKeyRequest{Id: *id})
	if err != nil {
		return err
	}
	return c.print(resp)
}

func keysList(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("keys list", c)
	owner := fs.String("owner", "", "owner")
	tenant := fs.String("tenant", "", "tenant")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	req := &wardenv1.ListApiKeysRequest{Owner: *owner, Tenant: *tenant, PageSize: 100}
	for {
		cctx, cancel := c.callCtx(ctx)
		resp, err := a.ListApiKeys(cctx, req)
		cancel()
		if err != nil {
			return err
		}
		if err := c.print(resp); err != nil {
			return err
		}
		if resp.NextPageToken == "" {
			return nil
		}
		req.PageToken = resp.NextPageToken
	}
}

func tokensRevoke(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("tokens revoke", c)
	jti := fs.String("jti", "", "the token's jti")
	exp := fs.String("exp", "", "the token's exp (RFC 3339); the revocation lasts until then")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *jti == "" || *exp == "" {
		return fmt.Errorf("-jti and -exp are required")
	}
	t, err := time.Parse(time.RFC3339, *exp)
	if err != nil {
		return fmt.Errorf("-exp: %w", err)
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	if _, err := a.RevokeToken(cctx, &wardenv1.RevokeTokenRequest{Jti: *jti, ExpiresAt: timestamppb.New(t)}); err != nil {
		return err
	}
	return c.result("revoked", map[string]any{"revoked": true, "jti": *jti, "expires_at": t.UTC().Format(time.RFC3339)})
}

// descriptorFlags collects -d k=v,k2=v2 (repeatable: one descriptor each).
type descriptorFlags []*wardenv1.RateLimitDescriptor

func (d *descriptorFlags) String() string { return "" }

func (d *descriptorFlags) Set(s string) error {
	desc := &wardenv1.RateLimitDescriptor{}
	for _, kv := range splitList(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("descriptor entry %q is not key=value", kv)
		}
		desc.Entries = append(desc.Entries, &wardenv1.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	*d = append(*d, desc)
	return nil
}

func limitFlags(name string, c *cli) (*flag.FlagSet, *string, *string, *descriptorFlags) {
	fs := newFlags(name, c)
	domain := fs.String("domain", "", "rate-limit domain")
	tier := fs.String("tier", "", "tier")
	var ds descriptorFlags
	fs.Var(&ds, "d", "descriptor as key=value,key2=value2 (repeat for several)")
	return fs, domain, tier, &ds
}

func limitsGet(ctx context.Context, c *cli, args []string) error {
	fs, domain, tier, ds := limitFlags("limits get", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *domain == "" || len(*ds) == 0 {
		return fmt.Errorf("-domain and at least one -d are required")
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := a.GetRateLimit(cctx, &wardenv1.GetRateLimitRequest{Domain: *domain, Descriptors: *ds, Tier: *tier})
	if err != nil {
		return err
	}
	return c.print(resp)
}

func limitsReset(ctx context.Context, c *cli, args []string) error {
	fs, domain, tier, ds := limitFlags("limits reset", c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *domain == "" || len(*ds) == 0 {
		return fmt.Errorf("-domain and at least one -d are required")
	}
	a, err := admin(c)
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	if _, err := a.ResetRateLimit(cctx, &wardenv1.ResetRateLimitRequest{Domain: *domain, Descriptors: *ds, Tier: *tier}); err != nil {
		return err
	}
	return c.result("reset", map[string]any{"reset": true, "domain": *domain})
}

// headerFlags collects -H "name: value".
type headerFlags map[string]string

func (h headerFlags) String() string { return "" }

func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, ":")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("header %q is not \"name: value\"", s)
	}
	h[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	return nil
}

func check(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("check", c)
	method := fs.String("method", "GET", "HTTP method")
	path := fs.String("path", "", "request path")
	host := fs.String("host", "", "host")
	hs := headerFlags{}
	fs.Var(hs, "H", `request header "name: value" (repeatable), e.g. -H "authorization: Bearer …"`)
	cost := fs.Int64("cost", 0, "rate-limit cost (0: peek, so a dry run consumes nothing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("-path is required")
	}
	cc, err := c.dial()
	if err != nil {
		return err
	}
	cctx, cancel := c.callCtx(ctx)
	defer cancel()
	resp, err := wardenv1.NewWardenServiceClient(cc).Check(cctx, &wardenv1.CheckRequest{
		Http: &wardenv1.HttpRequest{Method: *method, Path: *path, Host: *host, Headers: hs},
		Cost: cost,
	})
	if err != nil {
		return err
	}
	if c.output != "json" { // the verdict is in the JSON itself
		verdict := "ALLOWED"
		if !resp.Allowed {
			verdict = fmt.Sprintf("DENIED at %s: %s (HTTP %d)", resp.Stage, resp.Reason, resp.HttpStatus)
		}
		fmt.Fprintln(c.stdout, verdict)
	}
	return c.print(resp)
}
