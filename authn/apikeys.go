package authn

import (
	"context"
	"errors"
	"fmt"
	"github.com/wardenhq/warden/fielderr"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/wardenhq/warden/internal/budget"
)

// APIKeysConfig configures APIKeys. Store, Pepper and Env are required; every other field
// has the default stated beside it.
type APIKeysConfig struct {
	// Store holds the key records. Required.
	Store KeyStore `yaml:"-"`
	// Pepper keys the digests. Required.
	Pepper *Pepper `yaml:"-"`
	// Env is the environment of the keys this deployment issues (Create, Rotate), and the
	// only one it accepts unless Environments says otherwise. Required.
	Env Environment `yaml:"environment"`
	// Environments are the environments whose keys this deployment accepts; a key of
	// another is refused without a lookup (a live-only deployment refuses sk-test- keys).
	// Default [Env]. A key's environment is its principal's (Principal.Env).
	Environments []Environment `yaml:"environments"`
	// Imported are the formats of imported keys (see ImportedFormat), tried in order on a key
	// that is not a native one. None: only native keys are accepted.
	Imported []ImportedFormat `yaml:"imported_formats"`
	// CacheSize bounds the local cache of records (positive and negative). Default 10000.
	CacheSize int `yaml:"cache_size"`
	// CacheTTL is how long a found record is trusted before it is read again. Revocations
	// reach the cache sooner through Invalidate (redisauth.Subscriber). Default 30s.
	CacheTTL time.Duration `yaml:"cache_ttl"`
	// NegativeTTL is how long an unknown id is remembered as unknown. Default 5s.
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// StoreTimeout caps one store lookup on a cache miss. A lookup's budget is the caller's
	// deadline less a margin for answering (see package budget), at most StoreTimeout; a
	// lookup that fails or runs out of budget is Unavailable, and consecutive failures open
	// the store's circuit breaker (then a miss is Unavailable at once, until a probe lookup
	// succeeds; cached keys are unaffected). Default 500ms.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// BreakerCooldown is how long the store's breaker stays open before a probe lookup.
	// Default 500ms.
	BreakerCooldown time.Duration `yaml:"-"`
	// LastUsedInterval is how often, at most, a key's LastUsedAt is written back (by Run).
	// Default 10m.
	LastUsedInterval time.Duration `yaml:"-"`
	// RotationGrace is how long Rotate keeps the old key working. Default 24h.
	RotationGrace time.Duration `yaml:"rotation_grace"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives admin actions and store failures (key ids only, never secrets or
	// digests). Default slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

func (c *APIKeysConfig) setDefaults() {
	if c.CacheSize <= 0 {
		c.CacheSize = 10000
	}
	if c.CacheTTL <= 0 {
		c.CacheTTL = 30 * time.Second
	}
	if c.NegativeTTL <= 0 {
		c.NegativeTTL = 5 * time.Second
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = 500 * time.Millisecond
	}
	if c.LastUsedInterval <= 0 {
		c.LastUsedInterval = 10 * time.Minute
	}
	if c.RotationGrace <= 0 {
		c.RotationGrace = 24 * time.Hour
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// APIKeyStats counts what APIKeys did since it was built. Tests use Lookups to show that a
// malformed key or a cached key costs no store lookup.
type APIKeyStats struct {
	Lookups   uint64 // KeyStore.Key calls
	CacheHits uint64 // authentications answered from the cache (positive or negative)
	// CacheMisses counts authentications not answered from the cache: each waited for a
	// store lookup (concurrent misses of one id share one, so Lookups may be fewer).
	CacheMisses uint64
	Malformed   uint64 // keys refused by format, checksum or environment, with no lookup
}

// APIKeys authenticates API keys and manages them (create, rotate, revoke).
//
// Authenticate parses the key (format, checksum, environment: no lookup for a bad key),
// finds the record by id in a bounded local cache or else in the KeyStore, and compares
// HMAC-SHA256(pepper, secret) with the stored digest in constant time. On a cached key it
// does not allocate. The cache is invalidated by Invalidate/Flush (called locally by Revoke
// and Rotate, and across replicas by redisauth.Subscriber), and otherwise trusted for
// CacheTTL.
//
// Build one with NewAPIKeys; the zero value is not usable. Run writes LastUsedAt back in the
// background. Safe for concurrent use.
type APIKeys struct {
	cfg    APIKeysConfig
	guard  *budget.Guard // store lookups on the request path
	now    func() time.Time
	log    *slog.Logger
	touchC chan touch

	mu    sync.RWMutex
	gen   uint64 // bumped by every invalidation: a miss that started earlier does not fill
	cache map[string]*keyEntry
	// misses shares one store lookup among the concurrent misses of one id, so a burst on a
	// key that is not cached (a new key, or every key after a flush) costs the store one
	// read per key, not one per request.
	misses singleflight.Group

	lookups, hits, cacheMisses, malformed atomic.Uint64
}

type touch struct {
	id string
	at time.Time
}

// keyEntry is a cached record, immutable except lastTouch.
type keyEntry struct {
	found     bool
	imported  bool
	env       Environment
	digest    Digest
	expiresAt time.Time
	revokedAt time.Time
	until     time.Time // cache expiry
	principal Principal
	lastTouch atomic.Int64 // unix nanos of the last LastUsedAt written or queued
}

// NewAPIKeys checks cfg, applies defaults and returns an APIKeys.
func NewAPIKeys(cfg APIKeysConfig) (*APIKeys, error) {
	if cfg.Store == nil {
		return nil, errors.New("authn: APIKeysConfig.Store is required")
	}
	if cfg.Pepper == nil || !cfg.Pepper.set {
		return nil, errors.New("authn: APIKeysConfig.Pepper is required")
	}
	if cfg.Env != EnvLive && cfg.Env != EnvTest {
		return nil, errors.New("authn: APIKeysConfig.Env must be EnvLive or EnvTest")
	}
	if len(cfg.Environments) == 0 {
		cfg.Environments = []Environment{cfg.Env}
	}
	for _, e := range cfg.Environments {
		if e != EnvLive && e != EnvTest {
			return nil, fielderr.New("environments", errors.New("may hold only live and test"))
		}
	}
	cfg.Imported = append([]ImportedFormat(nil), cfg.Imported...)
	for i := range cfg.Imported {
		f := &cfg.Imported[i]
		if err := f.setDefaults(); err != nil {
			return nil, fielderr.New(fmt.Sprintf("imported_formats[%d]", i), err)
		}
		if f.Env != EnvUnspecified && !slices.Contains(cfg.Environments, f.Env) {
			return nil, fielderr.New(fmt.Sprintf("imported_formats[%d].environment", i), fmt.Errorf("environment %v is not one of environments", f.Env))
		}
	}
	cfg.setDefaults()
	return &APIKeys{
		cfg: cfg,
		guard: budget.New(budget.Config{Name: "apikey_store", Cap: cfg.StoreTimeout, Cooldown: cfg.BreakerCooldown,
			Logger: cfg.Logger}),
		now:    cfg.Now,
		log:    cfg.Logger,
		touchC: make(chan touch, 1024),
		cache:  make(map[string]*keyEntry),
	}, nil
}

// Stats returns the counters.
func (a *APIKeys) Stats() APIKeyStats {
	return APIKeyStats{Lookups: a.lookups.Load(), CacheHits: a.hits.Load(), CacheMisses: a.cacheMisses.Load(), Malformed: a.malformed.Load()}
}

// Guard is the key store's budget and breaker, for metrics.
func (a *APIKeys) Guard() *budget.Guard { return a.guard }

// Authenticate returns the principal that key stands for, or the reason it is refused.
// Unavailable means the store failed, or could not answer within the caller's deadline. The returned Principal shares its slices with the
// cache: read-only.
func (a *APIKeys) Authenticate(ctx context.Context, key string) (Principal, Reason) {
	var (
		id       string
		idb      [importedIDLen]byte // an imported key's id, derived from its digest
		d        Digest
		env      Environment // the key's own environment; EnvUnspecified: the record's
		imported bool
	)
	if pk, err := ParseAPIKey(key); err == nil {
		// A native key: the checksum refused mistyped keys without a lookup.
		if !a.accepts(pk.Env) {
			a.malformed.Add(1)
			return Principal{}, Malformed
		}
		id, env, d = pk.ID, pk.Env, a.cfg.Pepper.Digest(pk.Secret)
	} else if f := a.importedFormat(key); f != nil {
		imported, env = true, f.Env
		d = a.cfg.Pepper.DigestImported(key)
		importedID(&idb, &d)
	} else {
		a.malformed.Add(1)
		return Principal{}, Malformed
	}
	now := a.now()
	var e *keyEntry
	if imported {
		e = a.cached(string(idb[:]), now) // does not escape: no allocation (TestImportedCachedAllocs)
	} else {
		e = a.cached(id, now)
	}
	if e == nil {
		a.cacheMisses.Add(1)
		if imported {
			id = string(idb[:])
		}
		var r Reason
		if e, r = a.fill(ctx, id, now); e == nil {
			return Principal{}, r
		}
	} else {
		a.hits.Add(1)
	}
	// The digest is computed and compared for an unknown id too (against the zero digest of
	// a negative entry), so that an unknown id costs what a wrong secret does: the time of
	// an answer does not tell which ids exist.
	match := digestEqual(&d, &e.digest)
	if !e.found || e.imported != imported || (env != EnvUnspecified && e.env != env) || !a.accepts(e.env) {
		return Principal{}, Unknown
	}
	if !match {
		return Principal{}, BadSignature
	}
	if !e.revokedAt.IsZero() && !now.Before(e.revokedAt) {
		return Principal{}, Revoked
	}
	if !e.expiresAt.IsZero() && !now.Before(e.expiresAt) {
		return Principal{}, Expired
	}
	a.maybeTouch(e, now)
	return e.principal, OK
}

// accepts reports whether this deployment accepts keys of environment env.
func (a *APIKeys) accepts(env Environment) bool {
	for _, e := range a.cfg.Environments {
		if e == env {
			return true
		}
	}
	return false
}

// importedFormat returns the first imported format key has, or nil.
func (a *APIKeys) importedFormat(key string) *ImportedFormat {
	for i := range a.cfg.Imported {
		if f := &a.cfg.Imported[i]; f.match(key) {
			return f
		}
	}
	return nil
}

// ClaimsToken reports whether a bearer token that does not look like a native key has the
// prefix of an imported key format: the Authenticator then sends it here rather than to a
// token verifier. Formats without a prefix never claim a bearer token (they are read from
// the API key header or "authorization: ApiKey").
func (a *APIKeys) ClaimsToken(tok string) bool {
	for i := range a.cfg.Imported {
		if f := &a.cfg.Imported[i]; f.Prefix != "" && f.match(tok) {
			return true
		}
	}
	return false
}

func (a *APIKeys) cached(id string, now time.Time) *keyEntry {
	a.mu.RLock()
	e := a.cache[id]
	a.mu.RUnlock()
	if e == nil || !now.Before(e.until) {
		return nil
	}
	return e
}

// fill reads id from the store into the cache. Concurrent misses of one id share a lookup;
// each caller still waits no longer than its own budget (its deadline less the answering
// margin) allows.
// The generation is part of the shared key: a miss after an invalidation (a revocation, say)
// never joins a lookup that started before it.
func (a *APIKeys) fill(ctx context.Context, id string, now time.Time) (*keyEntry, Reason) {
	b := a.guard.Budget(ctx, time.Now())
	if b <= 0 {
		return nil, Unavailable
	}
	a.mu.RLock()
	gen := a.gen
	a.mu.RUnlock()
	var led atomic.Bool // this caller's own lookup: it ends by this caller's budget
	ch := a.misses.DoChan(strconv.FormatUint(gen, 10)+":"+id, func() (any, error) {
		led.Store(true)
		// Detached from the first caller's cancellation, which must not fail the others,
		// but bounded by its deadline.
		lctx := context.WithoutCancel(ctx)
		if dl, ok := ctx.Deadline(); ok {
			var cancel context.CancelFunc
			lctx, cancel = context.WithDeadline(lctx, dl)
			defer cancel()
		}
		e, r := a.lookup(lctx, id, gen, now)
		return fillResult{e, r}, nil
	})
	t := time.NewTimer(b)
	defer t.Stop()
	for {
		select {
		case res := <-ch:
			fr := res.Val.(fillResult)
			return fr.e, fr.r
		case <-t.C:
			if led.Load() {
				// The lookup is this caller's: its guard settles it at the same moment, so
				// that the breaker has counted it when the caller returns.
				continue
			}
			return nil, Unavailable // joined a lookup that outlasts this caller's budget
		case <-ctx.Done():
			return nil, Unavailable
		}
	}
}

type fillResult struct {
	e *keyEntry
	r Reason
}

// lookup is one store read of id, cached unless an invalidation came after generation gen.
func (a *APIKeys) lookup(ctx context.Context, id string, gen uint64, now time.Time) (*keyEntry, Reason) {
	var (
		rec      KeyRecord
		notFound bool
	)
	err := a.guard.Do(ctx, func(ctx context.Context) error {
		a.lookups.Add(1)
		r, err := a.cfg.Store.Key(ctx, id)
		if errors.Is(err, ErrKeyNotFound) {
			notFound = true
			return nil // an answer
		}
		rec = r
		return err
	})
	e := &keyEntry{}
	switch {
	case err != nil:
		if err != budget.ErrOpen && err != budget.ErrNoTime { // an open breaker was logged once
			a.log.LogAttrs(ctx, slog.LevelWarn, "api key store lookup failed",
				slog.String("key_id", id), slog.String("error", err.Error()))
		}
		return nil, Unavailable
	case notFound:
		e.until = now.Add(a.cfg.NegativeTTL)
	default:
		e.found = true
		e.imported = rec.Imported
		e.env = rec.Env
		e.digest = rec.Digest
		e.expiresAt = rec.ExpiresAt
		e.revokedAt = rec.RevokedAt
		e.until = now.Add(a.cfg.CacheTTL)
		e.principal = Principal{
			Subject:      rec.Owner,
			Tenant:       rec.Tenant,
			Roles:        rec.Roles,
			Scopes:       rec.Scopes,
			Method:       MethodAPIKey,
			CredentialID: rec.ID,
			Env:          rec.Env,
			Tier:         rec.Tier,
			ExpiresAt:    rec.effectiveExpiry(),
			Claims:       rec.Labels,
		}
		if !rec.LastUsedAt.IsZero() {
			e.lastTouch.Store(rec.LastUsedAt.UnixNano())
		}
	}
	a.mu.Lock()
	if a.gen == gen { // no invalidation since the lookup started
		if _, ok := a.cache[id]; !ok && len(a.cache) >= a.cfg.CacheSize {
			for k := range a.cache { // map order is random: evict an arbitrary entry
				delete(a.cache, k)
				break
			}
		}
		a.cache[id] = e
	}
	a.mu.Unlock()
	return e, OK
}

func (a *APIKeys) maybeTouch(e *keyEntry, now time.Time) {
	last := e.lastTouch.Load()
	n := now.UnixNano()
	if n-last < int64(a.cfg.LastUsedInterval) || !e.lastTouch.CompareAndSwap(last, n) {
		return
	}
	select {
	case a.touchC <- touch{id: e.principal.CredentialID, at: now}:
	default: // Run is behind or not running: LastUsedAt is approximate anyway
	}
}

// Run writes LastUsedAt back to the store until ctx is done; it returns nil then. Run it
// once per APIKeys (cmd runs it in its errgroup).
func (a *APIKeys) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-a.touchC:
			tctx, cancel := context.WithTimeout(ctx, a.cfg.StoreTimeout)
			if err := a.cfg.Store.Touch(tctx, t.id, t.at); err != nil && ctx.Err() == nil {
				a.log.LogAttrs(ctx, slog.LevelWarn, "api key last-used update failed",
					slog.String("key_id", t.id), slog.String("error", err.Error()))
			}
			cancel()
		}
	}
}

// InvalidateKey drops id from the local cache, so the next use reads the store.
func (a *APIKeys) InvalidateKey(id string) {
	a.mu.Lock()
	a.gen++
	delete(a.cache, id)
	a.mu.Unlock()
}

// FlushKeys empties the local cache (after a pub/sub reconnect, when invalidations may have
// been missed).
func (a *APIKeys) FlushKeys() {
	a.mu.Lock()
	a.gen++
	clear(a.cache)
	a.mu.Unlock()
}

// KeySpec describes the principal a new key authenticates.
type KeySpec struct {
	Owner  string
	Tenant string
	Roles  []string
	Scopes []string // nil: not narrowed
	Tier   string
	Labels map[string]string
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
}

// Principal is the principal a key made from spec names (its identity values, for
// Principal.Passable).
func (spec KeySpec) Principal() Principal {
	return Principal{Subject: spec.Owner, Tenant: spec.Tenant, Roles: spec.Roles, Scopes: spec.Scopes, Tier: spec.Tier}
}

// Create issues a key in the configured environment and stores its record. The plaintext
// key is returned once and never stored.
func (a *APIKeys) Create(ctx context.Context, spec KeySpec) (string, KeyRecord, error) {
	if spec.Owner == "" {
		return "", KeyRecord{}, errors.New("authn: create API key: owner is required")
	}
	if !spec.Principal().Passable() {
		return "", KeyRecord{}, errors.New("authn: create API key: a value the identity headers cannot carry (see Principal.Passable)")
	}
	now := a.now()
	if !spec.ExpiresAt.IsZero() && !spec.ExpiresAt.After(now) {
		return "", KeyRecord{}, errors.New("authn: create API key: expiry is in the past")
	}
	key, pk, err := NewAPIKey(a.cfg.Env)
	if err != nil {
		return "", KeyRecord{}, err
	}
	rec := KeyRecord{
		ID: pk.ID, Env: pk.Env, Digest: a.cfg.Pepper.Digest(pk.Secret),
		Owner: spec.Owner, Tenant: spec.Tenant, Roles: spec.Roles, Scopes: spec.Scopes,
		Tier: spec.Tier, Labels: spec.Labels, CreatedAt: now, ExpiresAt: spec.ExpiresAt,
	}
	if err := a.cfg.Store.Put(ctx, rec); err != nil {
		return "", KeyRecord{}, fmt.Errorf("authn: create API key: %w", err)
	}
	a.InvalidateKey(rec.ID) // a negative entry may exist
	a.log.LogAttrs(ctx, slog.LevelInfo, "api key created", slog.String("key_id", rec.ID),
		slog.String("owner", rec.Owner), slog.String("tenant", rec.Tenant))
	return key, rec, nil
}

// Rotate issues a new key for the same principal as key id and keeps the old key working
// until now + RotationGrace (or its earlier expiry or revocation). It returns the new
// plaintext key once.
func (a *APIKeys) Rotate(ctx context.Context, id string) (string, KeyRecord, error) {
	return a.RotateWithGrace(ctx, id, a.cfg.RotationGrace)
}

// RotationGrace is how long Rotate keeps an old key working, and the longest grace
// RotateWithGrace takes.
func (a *APIKeys) RotationGrace() time.Duration { return a.cfg.RotationGrace }

// RotateWithGrace is Rotate with the old key working until now + grace instead: a shorter
// overlap, down to none, e.g. for a key that leaked. grace may not be negative nor exceed
// RotationGrace (the deployment's policy bounds how long two keys of one principal both work):
// either is an ErrBadGrace.
func (a *APIKeys) RotateWithGrace(ctx context.Context, id string, grace time.Duration) (string, KeyRecord, error) {
	if grace < 0 || grace > a.cfg.RotationGrace {
		return "", KeyRecord{}, fmt.Errorf("authn: rotate API key %s: grace %v: %w", id, grace, ErrBadGrace)
	}
	old, err := a.cfg.Store.Key(ctx, id)
	if err != nil {
		return "", KeyRecord{}, fmt.Errorf("authn: rotate API key %s: %w", id, err)
	}
	now := a.now()
	if !old.RevokedAt.IsZero() && !now.Before(old.RevokedAt) {
		return "", KeyRecord{}, fmt.Errorf("authn: rotate API key %s: already revoked", id)
	}
	key, pk, err := NewAPIKey(old.Env) // an imported key is rotated into a native key
	if err != nil {
		return "", KeyRecord{}, err
	}
	rec := old
	rec.ID, rec.Env, rec.Digest, rec.Imported = pk.ID, pk.Env, a.cfg.Pepper.Digest(pk.Secret), false
	rec.CreatedAt, rec.LastUsedAt, rec.RevokedAt, rec.RotatedFrom = now, time.Time{}, time.Time{}, id
	if err := a.cfg.Store.Put(ctx, rec); err != nil {
		return "", KeyRecord{}, fmt.Errorf("authn: rotate API key %s: %w", id, err)
	}
	a.InvalidateKey(rec.ID)
	until := now.Add(grace)
	if old.RevokedAt.IsZero() || until.Before(old.RevokedAt) {
		if err := a.cfg.Store.Revoke(ctx, id, until); err != nil {
			return "", KeyRecord{}, fmt.Errorf("authn: rotate API key %s: revoke old key: %w", id, err)
		}
	}
	a.InvalidateKey(id)
	a.log.LogAttrs(ctx, slog.LevelInfo, "api key rotated", slog.String("key_id", id),
		slog.String("new_key_id", rec.ID), slog.Time("old_valid_until", until))
	return key, rec, nil
}

// Revoke makes key id stop working now, here at once and on other replicas through the
// store's invalidation (redisauth).
func (a *APIKeys) Revoke(ctx context.Context, id string) error {
	if err := a.cfg.Store.Revoke(ctx, id, a.now()); err != nil {
		return fmt.Errorf("authn: revoke API key %s: %w", id, err)
	}
	a.InvalidateKey(id)
	a.log.LogAttrs(ctx, slog.LevelInfo, "api key revoked", slog.String("key_id", id))
	return nil
}

// Env is the environment whose keys this deployment issues.
func (a *APIKeys) Env() Environment { return a.cfg.Env }

// Accepts reports whether this deployment accepts keys of environment env.
func (a *APIKeys) Accepts(env Environment) bool { return a.accepts(env) }

// Import stores an imported key (see ImportedFormat): a key Warden did not issue, in one of
// the configured formats, for the principal spec describes. env is the key's environment
// when its format does not fix one (EnvUnspecified otherwise, or the same). Only the key's
// digest is stored; a key already stored is ErrKeyExists. The record's id, derived from the
// digest, names the key from then on (revocation, rotation, logs).
func (a *APIKeys) Import(ctx context.Context, key string, env Environment, spec KeySpec) (KeyRecord, error) {
	rec, err := a.importRecord(key, env, spec)
	if err != nil {
		return KeyRecord{}, err
	}
	switch _, err := a.cfg.Store.Key(ctx, rec.ID); {
	case err == nil:
		return KeyRecord{}, fmt.Errorf("authn: import API key %s: %w", rec.ID, ErrKeyExists)
	case !errors.Is(err, ErrKeyNotFound):
		return KeyRecord{}, fmt.Errorf("authn: import API key %s: %w", rec.ID, err)
	}
	if err := a.cfg.Store.Put(ctx, rec); err != nil {
		return KeyRecord{}, fmt.Errorf("authn: import API key %s: %w", rec.ID, err)
	}
	a.InvalidateKey(rec.ID) // a negative entry may exist
	a.log.LogAttrs(ctx, slog.LevelDebug, "api key imported", slog.String("key_id", rec.ID),
		slog.String("owner", rec.Owner), slog.String("tenant", rec.Tenant))
	return rec, nil
}

// ImportedEnv checks that key can be imported (it has a configured imported format, and is
// not a Warden key) as a key of environment env, and returns its environment: the format's,
// else env. The error, an import error (IsImportError), never holds the key.
func (a *APIKeys) ImportedEnv(key string, env Environment) (Environment, error) {
	if _, err := ParseAPIKey(key); err == nil {
		return 0, importError("this is a Warden key, not a foreign one")
	}
	f := a.importedFormat(key)
	if f == nil {
		return 0, ErrImportedFormat
	}
	switch {
	case f.Env != EnvUnspecified && env != EnvUnspecified && env != f.Env:
		return 0, importError(fmt.Sprintf("the key's format is of environment %v, not %v", f.Env, env))
	case f.Env != EnvUnspecified:
		env = f.Env
	case env == EnvUnspecified:
		return 0, importError("the key's format fixes no environment: give one")
	}
	if !a.accepts(env) {
		return 0, importError(fmt.Sprintf("this deployment does not accept %v keys", env))
	}
	return env, nil
}

// importRecord checks an imported key and builds its record.
func (a *APIKeys) importRecord(key string, env Environment, spec KeySpec) (KeyRecord, error) {
	env, err := a.ImportedEnv(key, env)
	if err != nil {
		return KeyRecord{}, err
	}
	if spec.Owner == "" {
		return KeyRecord{}, importError("owner is required")
	}
	if !spec.Principal().Passable() {
		return KeyRecord{}, importError("owner, tenant, tier, roles and scopes may hold no control character, a role no comma, and a scope only RFC 6749 scope-token characters")
	}
	now := a.now()
	if !spec.ExpiresAt.IsZero() && !spec.ExpiresAt.After(now) {
		return KeyRecord{}, importError("expiry is in the past")
	}
	d := a.cfg.Pepper.DigestImported(key)
	return KeyRecord{
		ID: ImportedKeyID(d), Env: env, Digest: d, Imported: true,
		Owner: spec.Owner, Tenant: spec.Tenant, Roles: spec.Roles, Scopes: spec.Scopes,
		Tier: spec.Tier, Labels: spec.Labels, CreatedAt: now, ExpiresAt: spec.ExpiresAt,
	}, nil
}

// Store is the key store behind the cache, for listing and reading records.
func (a *APIKeys) Store() KeyStore { return a.cfg.Store }
