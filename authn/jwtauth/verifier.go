package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"github.com/wardenhq/warden/fielderr"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/internal/budget"
)

// Defaults for zero Config and IssuerConfig fields.
const (
	DefaultMaxTokenBytes   = 8 << 10
	DefaultCacheSize       = 10_000
	DefaultUnknownKIDWait  = 100 * time.Millisecond
	DefaultLeeway          = 30 * time.Second
	DefaultRefreshInterval = 5 * time.Minute
	DefaultRefreshCooldown = 30 * time.Second
	DefaultFetchTimeout    = 5 * time.Second
	DefaultMaxJWKSBytes    = 1 << 20
)

// Config configures a Verifier. Zero fields take the documented defaults.
type Config struct {
	// Issuers are the trusted token issuers; at least one, each Issuer string once.
	Issuers []IssuerConfig `yaml:"issuers"`
	// MaxTokenBytes refuses longer tokens before decoding them. Default 8 KiB.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// CacheSize bounds the verified-token cache (entries). Default 10,000; negative
	// disables the cache.
	CacheSize int `yaml:"cache_size"`
	// UnknownKIDWait is how long a request with an unknown kid waits for the refetch it
	// triggered (never beyond its context's deadline less a margin for answering:
	// internal/budget). Default 100 ms; negative: do not
	// wait, answer Unknown and let the fetch finish in the background.
	UnknownKIDWait time.Duration `yaml:"unknown_kid_wait"`
	// Revocations is consulted for every token with a jti. Default: a MemoryRevocations
	// private to this Verifier (one replica only).
	Revocations RevocationStore `yaml:"-"`
	// HTTPClient fetches JWKS URLs. Default: an http.Client with no timeout of its own. Its
	// CheckRedirect is replaced by each issuer's redirect policy
	// (IssuerConfig.AllowSameHostRedirects), and per-fetch time is bounded by
	// IssuerConfig.FetchTimeout, either way.
	HTTPClient *http.Client `yaml:"-"`
	// Previous is the Verifier this one replaces (a config reload), or nil. An issuer with the
	// same name, JWKS source and key policy starts with Previous's last good set, so that a
	// JWKS URL that cannot be reached at the reload does not leave it without keys.
	Previous *Verifier `yaml:"-"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives JWKS events (Warn on failed fetches) and, at Debug, why tokens were
	// refused. It never receives a token. Default: discard.
	Logger *slog.Logger `yaml:"-"`
}

// IssuerConfig is one trusted issuer.
type IssuerConfig struct {
	// Issuer is the exact "iss" value. Required.
	Issuer string `yaml:"issuer"`
	// Audiences: the token's "aud" must contain one of them. Required.
	Audiences []string `yaml:"audiences"`
	// Exactly one of JWKSURL (http or https) and JWKSFile gives the issuer's JWK Set.
	JWKSURL  string `yaml:"jwks_url"`
	JWKSFile string `yaml:"jwks_file"`
	// Algorithms allowed for this issuer, from RS256, PS256, ES256, EdDSA. Default: all
	// four (each key still verifies only what its type allows).
	Algorithms []string `yaml:"algorithms"`
	// Leeway for exp, nbf and iat. Default 30 s; negative means none.
	Leeway time.Duration `yaml:"leeway"`
	// Types, when set, are the accepted "typ" header values (e.g. "at+jwt"); compared
	// without case and with an optional "application/" prefix. Empty: typ is not checked.
	Types []string `yaml:"types"`
	// Claims maps claims to the Principal.
	Claims ClaimsConfig `yaml:"claims"`
	// RequiredClaims are claim paths that must be present and not null (e.g. "jti").
	RequiredClaims []string `yaml:"required_claims"`
	// RefreshInterval between background fetches of the set. Default 5 min.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// RefreshCooldown is the least time between two fetches triggered by unknown kids
	// (and after a failed background fetch). Default 30 s.
	RefreshCooldown time.Duration `yaml:"refresh_cooldown"`
	// FetchTimeout bounds one fetch. Default 5 s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// MaxJWKSBytes refuses larger sets. Default 1 MiB.
	MaxJWKSBytes int64 `yaml:"max_jwks_bytes"`
	// DropUnacceptableKeys drops, with a warning, the keys of a set that are unacceptable
	// (RSA under 2048 or over 8192 bits, "use" other than "sig", "key_ops" without
	// "verify", kty "oct", private material, malformed or off-curve key material) and keeps
	// the others. Default false: such a key refuses the whole set (Load reports it with the
	// key's line; a refresh keeps the last good set). Keys of a type, curve or algorithm this
	// package does not verify, or that Algorithms excludes, are skipped either way.
	DropUnacceptableKeys bool `yaml:"drop_unacceptable_keys"`
	// AllowSameHostRedirects follows up to 3 redirects of JWKSURL to the same scheme and
	// host (port included). Default false: a redirect is a failed fetch.
	AllowSameHostRedirects bool `yaml:"allow_same_host_redirects"`
}

// ClaimsConfig maps claims to Principal fields. A path names a top-level claim, or, when no
// top-level claim has that exact name (claim names may contain dots, e.g.
// "https://example.com/roles"), nested members separated by dots ("realm_access.roles").
type ClaimsConfig struct {
	// Subject is the path of Principal.Subject, a non-empty string. Default "sub".
	Subject string `yaml:"subject"`
	// Tenant is the path of Principal.Tenant (a string). Empty: no tenant.
	Tenant string `yaml:"tenant"`
	// Roles is the path of Principal.Roles: an array of strings or a space-separated
	// string. Empty: no roles.
	Roles string `yaml:"roles"`
	// Scopes is the path of Principal.Scopes (array or space-separated string). Default:
	// "scope" (space-separated string, RFC 8693), else "scp" (array). No scope claim gives
	// nil Scopes (not narrowed).
	Scopes string `yaml:"scopes"`
	// Tier is the path of Principal.Tier (a string). Empty: default tier.
	Tier string `yaml:"tier"`
	// Copy lists claim paths copied into Principal.Claims under their path: strings as
	// they are, numbers and booleans as JSON text, arrays of strings space-separated.
	// Other values are skipped.
	Copy []string `yaml:"copy"`
}

// Verifier verifies JWT bearer tokens of the configured issuers. It satisfies
// authn.TokenVerifier. Create it with New; call Run in the background to keep JWK Sets
// fresh (or Refresh to load them once). It is safe for concurrent use.
type Verifier struct {
	issuers       map[string]*issuer
	ordered       []*issuer
	maxTokenBytes int
	cache         *tokenCache // nil when disabled
	waitKID       time.Duration
	kidBudget     *budget.Guard // only its Budget: how long a request may wait for a refetch
	revocations   RevocationStore
	maxLeeway     time.Duration
	now           func() time.Time
	log           *slog.Logger
}

type issuer struct {
	name      string
	audiences []string
	allowed   alg
	leeway    time.Duration
	types     []string
	claims    ClaimsConfig
	required  []string
	src       *source
	// key identifies the set's source and policy, to carry a set over from Config.Previous.
	srcKey string
}

// New validates cfg and returns a Verifier. It does not fetch anything: keys are loaded by
// Run, Refresh, or the first token that needs them.
func New(cfg Config) (*Verifier, error) {
	v := &Verifier{
		issuers:       make(map[string]*issuer),
		maxTokenBytes: cmp0(cfg.MaxTokenBytes, DefaultMaxTokenBytes),
		waitKID:       cmp0(cfg.UnknownKIDWait, DefaultUnknownKIDWait),
		revocations:   cfg.Revocations,
		now:           cfg.Now,
		log:           cfg.Logger,
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.revocations == nil {
		v.revocations = NewMemoryRevocations(v.now)
	}
	v.kidBudget = budget.New(budget.Config{Name: "jwks_unknown_kid", Cap: v.waitKID, Logger: v.log})
	if size := cmp0(cfg.CacheSize, DefaultCacheSize); size > 0 {
		v.cache = newTokenCache(size)
	}
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("jwtauth: no issuer configured")
	}
	for i, ic := range cfg.Issuers {
		is, err := v.newIssuer(ic, client)
		if err != nil {
			return nil, fmt.Errorf("jwtauth: issuer %d (%q): %w", i, ic.Issuer, err)
		}
		if _, dup := v.issuers[is.name]; dup {
			return nil, fmt.Errorf("jwtauth: issuer %q configured twice", is.name)
		}
		v.issuers[is.name] = is
		v.maxLeeway = max(v.maxLeeway, is.leeway)
		v.ordered = append(v.ordered, is)
		if prev := cfg.Previous; prev != nil {
			if old := prev.issuers[is.name]; old != nil && old.srcKey == is.srcKey {
				is.src.set.Store(old.src.keys())
			}
		}
	}
	return v, nil
}

func cmp0[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func (v *Verifier) newIssuer(ic IssuerConfig, client *http.Client) (*issuer, error) {
	if ic.Issuer == "" {
		return nil, errors.New("issuer is required")
	}
	if len(ic.Audiences) == 0 || slices.Contains(ic.Audiences, "") {
		return nil, errors.New("audiences are required and must not be empty strings")
	}
	is := &issuer{
		name:      ic.Issuer,
		audiences: ic.Audiences,
		leeway:    max(0, cmp0(ic.Leeway, DefaultLeeway)),
		claims:    ic.Claims,
		required:  ic.RequiredClaims,
		allowed:   algAll,
	}
	if is.claims.Subject == "" {
		is.claims.Subject = "sub"
	}
	if len(ic.Algorithms) > 0 {
		is.allowed = 0
		for _, name := range ic.Algorithms {
			a := algByName(name)
			if a == 0 {
				return nil, fmt.Errorf("algorithm %q not supported (want RS256, PS256, ES256 or EdDSA)", name)
			}
			is.allowed |= a
		}
	}
	for _, t := range ic.Types {
		is.types = append(is.types, normType(t))
	}
	src := &source{
		issuer:   ic.Issuer,
		client:   client,
		maxBytes: cmp0(ic.MaxJWKSBytes, DefaultMaxJWKSBytes),
		timeout:  cmp0(ic.FetchTimeout, DefaultFetchTimeout),
		interval: cmp0(ic.RefreshInterval, DefaultRefreshInterval),
		cooldown: cmp0(ic.RefreshCooldown, DefaultRefreshCooldown),
		allowed:  is.allowed,
		now:      v.now,
		log:      v.log,

		dropUnacceptable: ic.DropUnacceptableKeys,
	}
	switch {
	case (ic.JWKSURL == "") == (ic.JWKSFile == ""):
		return nil, errors.New("exactly one of JWKSURL and JWKSFile is required")
	case ic.JWKSFile != "":
		src.file = ic.JWKSFile
	default:
		u, err := url.Parse(ic.JWKSURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("JWKSURL %q: want an absolute http or https URL", ic.JWKSURL)
		}
		src.url = ic.JWKSURL
		src.client = redirectPolicy(client, ic.AllowSameHostRedirects)
	}
	is.src = src
	is.srcKey = fmt.Sprintf("%s\x00%s\x00%d\x00%t", src.file, src.url, is.allowed, src.dropUnacceptable)
	return is, nil
}

func normType(t string) string {
	t = strings.ToLower(t)
	return strings.TrimPrefix(t, "application/")
}

// Run loads every issuer's JWK Set at once and then refreshes each every RefreshInterval
// until ctx ends, keeping the last good set on errors (logged). It returns nil when ctx
// ends.
func (v *Verifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, is := range v.ordered {
		wg.Go(func() { is.src.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Refresh fetches every issuer's JWK Set once, now, and returns the errors joined. A failed
// fetch keeps that issuer's last good set.
func (v *Verifier) Refresh(ctx context.Context) error {
	var errs []error
	for _, is := range v.ordered {
		if err := is.src.refresh(ctx); err != nil {
			errs = append(errs, fmt.Errorf("jwtauth: issuer %q: %w", is.name, err))
		}
	}
	return errors.Join(errs...)
}

// Load fetches every issuer's JWK Set once, now, as a config is built, and returns an error
// for a set that cannot be trusted: a JWKS file that cannot be read, or a set (file or URL)
// that is refused (a *JWKSError, naming the offending key's line). A JWKS URL that cannot
// be reached (network error, HTTP status, redirect, timeout) is logged and not an error: the
// issuer keeps the set carried over from Config.Previous, if any, and Run retries. Each
// fetch is bounded by its issuer's FetchTimeout; issuers are fetched concurrently.
func (v *Verifier) Load(ctx context.Context) error {
	errs := make([]error, len(v.ordered))
	var wg sync.WaitGroup
	for i, is := range v.ordered {
		wg.Go(func() {
			err := is.src.refresh(ctx)
			var je *JWKSError
			if err != nil && (is.src.file != "" || errors.As(err, &je)) {
				field := "jwks_url"
				if is.src.file != "" {
					field = "jwks_file"
				}
				// Config.Issuers[i] is v.ordered[i]: the path names the field of the config.
				errs[i] = fielderr.New(fmt.Sprintf("issuers[%d].%s", i, field), fmt.Errorf("issuer %q: %w", is.name, err))
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// JWKSStats returns how many JWK Set fetches were attempted and how many of them were
// refused (unreachable, redirected, too large, unparsable, unacceptable or empty), over all
// issuers since New. A refused fetch never replaces the last good set.
func (v *Verifier) JWKSStats() (fetches, refused uint64) {
	for _, is := range v.ordered {
		fetches += is.src.fetches.Load()
		refused += is.src.failures.Load()
	}
	return fetches, refused
}

// Revoke revokes the token id jti in the Verifier's RevocationStore until exp plus the
// largest issuer leeway, since a token is accepted until exp + leeway. Callers that write to
// a shared RevocationStore directly should add the leeway themselves.
func (v *Verifier) Revoke(ctx context.Context, jti string, exp time.Time) error {
	return v.revocations.Revoke(ctx, jti, exp.Add(v.maxLeeway))
}

// Verify verifies token (the compact JWS, without "Bearer ") and returns the principal it
// stands for, or the zero Principal and why not. Unavailable means the decision could not be
// made (no key set loaded yet, revocation store down). A cached token costs a digest, a map
// lookup and the revocation check.
func (v *Verifier) Verify(ctx context.Context, token string) (authn.Principal, authn.Reason) {
	if token == "" {
		return authn.Principal{}, authn.NoCredentials
	}
	if len(token) > v.maxTokenBytes {
		return v.refuse(ctx, fail(authn.Malformed, "token of %d bytes exceeds %d", len(token), v.maxTokenBytes))
	}
	now := v.now()
	var key [32]byte
	if v.cache != nil {
		key = digest(token)
		if p, ok := v.cache.get(key, now); ok {
			if f := v.checkRevoked(ctx, p.CredentialID); f != nil {
				return v.refuse(ctx, f)
			}
			return p, authn.OK
		}
	}
	p, k, f := v.verify(ctx, token, now)
	if f == nil {
		f = v.checkRevoked(ctx, p.CredentialID)
	}
	if f != nil {
		return v.refuse(ctx, f)
	}
	if v.cache != nil {
		v.cache.put(key, p, k, now)
	}
	return p, authn.OK
}

func (v *Verifier) refuse(ctx context.Context, f *failure) (authn.Principal, authn.Reason) {
	if v.log.Enabled(ctx, slog.LevelDebug) {
		v.log.DebugContext(ctx, "jwtauth: token refused", "reason", f.reason.String(), "detail", f.detail)
	}
	return authn.Principal{}, f.reason
}

func (v *Verifier) checkRevoked(ctx context.Context, jti string) *failure {
	if jti == "" {
		return nil
	}
	revoked, err := v.revocations.Revoked(ctx, jti)
	switch {
	case err != nil:
		return fail(authn.Unavailable, "revocation store: %v", err)
	case revoked:
		return fail(authn.Revoked, "jti revoked")
	}
	return nil
}

// verify verifies token fully and returns its principal and the key that verified it.
func (v *Verifier) verify(ctx context.Context, token string, now time.Time) (authn.Principal, *jwk, *failure) {
	t, f := parseJWS(token)
	if f != nil {
		return authn.Principal{}, nil, f
	}
	iss, _ := t.claims["iss"].(string)
	is := v.issuers[iss]
	if is == nil {
		return authn.Principal{}, nil, fail(authn.WrongIssuer, "issuer %.100q not trusted", iss)
	}
	if t.alg&is.allowed == 0 {
		return authn.Principal{}, nil, fail(authn.UnsupportedAlgorithm, "%v not allowed for this issuer", t.alg)
	}
	if len(is.types) > 0 && !slices.Contains(is.types, normType(t.typ)) {
		return authn.Principal{}, nil, fail(authn.Malformed, "typ %.40q not accepted", t.typ)
	}
	k, f := v.key(ctx, is, &t)
	if f != nil {
		return authn.Principal{}, nil, f
	}
	if !k.verify(t.alg, t.signingInput, t.sig) {
		return authn.Principal{}, nil, fail(authn.BadSignature, "%v signature does not verify", t.alg)
	}
	p, f := is.principal(t.claims, now)
	return p, k, f
}

// key finds the key for t, fetching the set again (at most once per cooldown) when it is not
// loaded yet or does not know t's kid. It waits for that fetch at most UnknownKIDWait and
// never past the budget of ctx's deadline (the deadline less a margin for answering, as for
// every dependency call: internal/budget), so the caller gets Unknown (401) or Unavailable
// (503, no set loaded yet) before its deadline, while the fetch goes on in the background.
func (v *Verifier) key(ctx context.Context, is *issuer, t *jws) (*jwk, *failure) {
	ks := is.src.keys()
	if ks != nil {
		k, f := ks.find(t.kid, t.hasKID, t.alg)
		if f == nil || f.reason != authn.Unknown {
			return k, f
		}
	}
	if ch := is.src.kick(); ch != nil && v.waitKID > 0 {
		if wait := v.kidBudget.Budget(ctx, time.Now()); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ch:
			case <-timer.C:
			case <-ctx.Done():
			}
			timer.Stop()
		}
	}
	if ks = is.src.keys(); ks == nil {
		return nil, fail(authn.Unavailable, "no JWK Set loaded for this issuer yet")
	}
	return ks.find(t.kid, t.hasKID, t.alg)
}
