package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wardenhq/warden/internal/budget"

	"github.com/wardenhq/warden/fielderr"
)

// IntrospectionConfig configures an Introspector. Endpoint is required; every other field
// has the default stated beside it.
type IntrospectionConfig struct {
	// Endpoint is the RFC 7662 introspection URL. Required.
	Endpoint string `yaml:"endpoint"`
	// ClientID and ClientSecret authenticate Warden to the endpoint (HTTP Basic). Optional.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret" config:"secret"`
	// HTTPClient sends the requests. Default a client with no timeout of its own (Timeout
	// applies per call).
	HTTPClient *http.Client `yaml:"-"`
	// Timeout caps one introspection call. A call's budget is the caller's deadline less a
	// margin for answering (see package budget), at most Timeout. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxResponseBytes caps the response body; a larger one is a failure. Default 64 KiB.
	MaxResponseBytes int64 `yaml:"-"`
	// MaxTokenBytes refuses longer tokens as Malformed without a call. Default 4096.
	MaxTokenBytes int `yaml:"-"`
	// Issuer, if set, must equal the response's iss (else WrongIssuer).
	Issuer string `yaml:"issuer"`
	// Audiences, if set, must contain one of the response's aud values (else WrongAudience).
	Audiences []string `yaml:"audiences"`
	// ClientIDs, if set, must contain the response's client_id (else NotAllowed).
	ClientIDs []string `yaml:"client_ids"`
	// TokenTypes are the token_type values accepted when the response has one, compared
	// case-insensitively (RFC 6749 5.1); any other type (refresh_token, say) is
	// WrongTokenType (RFC 7662 2.2, RFC 6749 1.5). Default [access_token Bearer].
	TokenTypes []string `yaml:"token_types"`
	// TenantClaim, if set, names a string member of the response copied to Principal.Tenant.
	TenantClaim string `yaml:"tenant_claim"`
	// CacheSize bounds the result cache. Default 10000.
	CacheSize int `yaml:"cache_size"`
	// MaxCacheTTL caps how long an active token is cached; it is never cached past its exp.
	// Default 5m.
	MaxCacheTTL time.Duration `yaml:"max_cache_ttl"`
	// NegativeCacheTTL is how long a refused token (inactive, expired, wrong issuer…) is
	// remembered. Default 10s.
	NegativeCacheTTL time.Duration `yaml:"negative_cache_ttl"`
	// BreakerFailures consecutive failures open the circuit breaker; a call that does not
	// finish within its budget is a failure. Default 5.
	BreakerFailures int `yaml:"breaker_failures"`
	// BreakerCooldown is how long the breaker stays open (every uncached token is
	// Unavailable, no call is made) before one probe call is let through. Default 10s.
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
	// Now is the clock for expiry and caching. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives endpoint failures (never the token). Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// IntrospectionStats counts what an Introspector did.
type IntrospectionStats struct {
	Calls        uint64 // HTTP requests sent to the endpoint
	CacheHits    uint64
	BreakerOpens uint64 // times the breaker opened
}

// Introspector is a TokenVerifier for opaque OAuth2 access tokens: it asks an RFC 7662
// endpoint (POST form token=…, client credentials by HTTP Basic), honours active (JSON
// true only), token_type, exp, nbf, iss, aud, client_id and scope, and caches the answer
// keyed by the SHA-256 of the token. Each call runs under a budget.Guard: it ends before the
// caller's deadline, and when the endpoint fails or hangs it fails closed (Unavailable) and
// the breaker stops calling it for a while. Build it with NewIntrospector. Safe for
// concurrent use.
type Introspector struct {
	cfg   IntrospectionConfig
	guard *budget.Guard

	mu    sync.Mutex
	cache map[[32]byte]introResult

	calls, hits atomic.Uint64
}

type introResult struct {
	p     Principal
	r     Reason
	until time.Time
}

// NewIntrospector checks cfg and returns an Introspector.
func NewIntrospector(cfg IntrospectionConfig) (*Introspector, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fielderr.New("endpoint", errors.New("want an http(s) URL"))
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = 64 << 10
	}
	if cfg.MaxTokenBytes <= 0 {
		cfg.MaxTokenBytes = 4096
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = 10000
	}
	if cfg.MaxCacheTTL <= 0 {
		cfg.MaxCacheTTL = 5 * time.Minute
	}
	if cfg.NegativeCacheTTL <= 0 {
		cfg.NegativeCacheTTL = 10 * time.Second
	}
	if cfg.BreakerFailures <= 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerCooldown <= 0 {
		cfg.BreakerCooldown = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TokenTypes == nil {
		cfg.TokenTypes = []string{"access_token", "Bearer"}
	}
	g := budget.New(budget.Config{Name: "oauth2_introspection", Cap: cfg.Timeout, Failures: cfg.BreakerFailures,
		Cooldown: cfg.BreakerCooldown, Logger: cfg.Logger, Now: cfg.Now})
	return &Introspector{cfg: cfg, guard: g, cache: make(map[[32]byte]introResult)}, nil
}

var _ TokenVerifier = (*Introspector)(nil)

// Stats returns the counters.
func (in *Introspector) Stats() IntrospectionStats {
	return IntrospectionStats{Calls: in.calls.Load(), CacheHits: in.hits.Load(), BreakerOpens: in.guard.Stats().Opens}
}

// Guard is the endpoint's budget and breaker, for metrics.
func (in *Introspector) Guard() *budget.Guard { return in.guard }

// Verify implements TokenVerifier.
func (in *Introspector) Verify(ctx context.Context, token string) (Principal, Reason) {
	if token == "" {
		return Principal{}, NoCredentials
	}
	if len(token) > in.cfg.MaxTokenBytes {
		return Principal{}, Malformed
	}
	key := sha256.Sum256([]byte(token))
	now := in.cfg.Now()
	in.mu.Lock()
	res, ok := in.cache[key]
	in.mu.Unlock()
	if ok && now.Before(res.until) {
		in.hits.Add(1)
		// A cached principal may outlive its token only if exp was absent.
		if !res.p.ExpiresAt.IsZero() && !now.Before(res.p.ExpiresAt) {
			return Principal{}, Expired
		}
		return res.p, res.r
	}
	var body []byte
	err := in.guard.Do(ctx, func(ctx context.Context) error {
		var err error
		body, err = in.call(ctx, token)
		return err
	})
	if err != nil {
		if err != budget.ErrOpen { // an open breaker was logged when it opened
			in.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "oauth2 introspection failed", slog.String("error", err.Error()))
		}
		return Principal{}, Unavailable
	}
	res = in.judge(body, now)
	res.p.CredentialID = hex.EncodeToString(key[:8])
	if res.r != OK {
		res.p = Principal{}
		res.until = now.Add(in.cfg.NegativeCacheTTL)
	}
	in.mu.Lock()
	if len(in.cache) >= in.cfg.CacheSize {
		for k, v := range in.cache { // drop expired entries, or else one arbitrary entry
			if !now.Before(v.until) {
				delete(in.cache, k)
			}
		}
		for k := range in.cache {
			if len(in.cache) < in.cfg.CacheSize {
				break
			}
			delete(in.cache, k)
		}
	}
	in.cache[key] = res
	in.mu.Unlock()
	return res.p, res.r
}

type introspection struct {
	Active    bool            `json:"active"` // a string or number fails to decode: Malformed
	TokenType *string         `json:"token_type"`
	Scope     string          `json:"scope"`
	ClientID  string          `json:"client_id"`
	Sub       string          `json:"sub"`
	Iss       string          `json:"iss"`
	Aud       json.RawMessage `json:"aud"`
	Exp       *float64        `json:"exp"`
	Nbf       *float64        `json:"nbf"`
}

// call asks the endpoint once; ctx carries the budget.
func (in *Introspector) call(ctx context.Context, token string) ([]byte, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.Endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if in.cfg.ClientID != "" {
		req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	}
	in.calls.Add(1)
	resp, err := in.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("introspection endpoint answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, in.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > in.cfg.MaxResponseBytes {
		return nil, errors.New("introspection response too large")
	}
	if !json.Valid(body) {
		return nil, errors.New("introspection response is not JSON")
	}
	return body, nil
}

// judge turns a response into a result; the caller fixes the negative cache time.
func (in *Introspector) judge(body []byte, now time.Time) introResult {
	var r introspection
	if err := json.Unmarshal(body, &r); err != nil {
		return introResult{r: Malformed}
	}
	if !r.Active {
		return introResult{r: Inactive}
	}
	if r.TokenType != nil && !slices.ContainsFunc(in.cfg.TokenTypes, func(t string) bool { return strings.EqualFold(t, *r.TokenType) }) {
		return introResult{r: WrongTokenType}
	}
	var exp time.Time
	if r.Exp != nil {
		exp = time.Unix(int64(*r.Exp), 0)
		if !now.Before(exp) {
			return introResult{r: Expired}
		}
	}
	if r.Nbf != nil && now.Before(time.Unix(int64(*r.Nbf), 0)) {
		return introResult{r: NotYetValid}
	}
	if in.cfg.Issuer != "" && r.Iss != in.cfg.Issuer {
		return introResult{r: WrongIssuer}
	}
	if len(in.cfg.Audiences) > 0 {
		var auds []string
		var one string
		if json.Unmarshal(r.Aud, &one) == nil {
			auds = []string{one}
		} else {
			_ = json.Unmarshal(r.Aud, &auds)
		}
		if !slices.ContainsFunc(auds, func(a string) bool { return slices.Contains(in.cfg.Audiences, a) }) {
			return introResult{r: WrongAudience}
		}
	}
	if len(in.cfg.ClientIDs) > 0 && !slices.Contains(in.cfg.ClientIDs, r.ClientID) {
		return introResult{r: NotAllowed}
	}
	p := Principal{Subject: r.Sub, Method: MethodOAuth2, ExpiresAt: exp}
	if p.Subject == "" {
		p.Subject = r.ClientID // a client-credentials token acts for the client
	}
	if p.Subject == "" {
		return introResult{r: Malformed}
	}
	if r.Scope != "" {
		p.Scopes = SplitScopes(r.Scope)
	} else {
		p.Scopes = []string{} // a token without scope is narrowed to nothing
	}
	if r.ClientID != "" {
		p.Claims = map[string]string{"client_id": r.ClientID}
	}
	if in.cfg.TenantClaim != "" {
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) == nil {
			_ = json.Unmarshal(m[in.cfg.TenantClaim], &p.Tenant)
		}
	}
	until := now.Add(in.cfg.MaxCacheTTL)
	if !exp.IsZero() && exp.Before(until) {
		until = exp
	}
	return introResult{p: p, r: OK, until: until}
}
