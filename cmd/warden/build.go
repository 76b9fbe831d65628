package main

import (
	"context"
	"runtime"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/authn/jwtauth/redisrevoke"
	"github.com/wardenhq/warden/authn/redisauth"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authn/webhook/redisreplay"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/redisconn"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/redisstore"
	"github.com/wardenhq/warden/service"
)

// stores are the long-lived state Warden keeps across config reloads: in Redis when it is
// configured, in this process otherwise. A reload builds new capabilities on the same stores,
// so that, for example, a replayed webhook is still refused after a reload.
type stores struct {
	webhookReplay webhook.ReplayStore
	// limits counts rate limits; limitsFallback serves the local failure policy.
	limits, limitsFallback limiter.Store
	// apiKeys holds API keys created through AdminService; jwtRevocations revoked jtis.
	apiKeys        authn.KeyStore
	jwtRevocations jwtauth.RevocationStore
}

// openStores opens the stores and returns their background work. With Redis, the rate-limit
// script is loaded on every server before Warden reports ready, so that the first decision is
// counted like the others, and readiness (/readyz) keeps checking both Redis and the script.
func (a *app) openStores(ctx context.Context) ([]runFunc, error) {
	prefix := a.cfg.Redis.KeyPrefix
	fallback := memstore.New(fallbackOptions(a.redis != nil))
	runs := []runFunc{fallback.Run}
	a.stores.limitsFallback = fallback
	if a.redis != nil {
		a.stores.webhookReplay = redisreplay.New(a.redis, redisreplay.Config{Prefix: prefix + webhookKeys})
		obs, err := a.tel.redisObserver()
		if err != nil {
			return nil, err
		}
		rs, err := redisstore.New(a.redis, redisstore.Options{Prefix: prefix + rateLimitKeys, Logger: a.log, Pipelines: a.cfg.Redis.Pipelines, Hashes: a.cfg.Redis.RateLimitHashes, Observer: obs})
		if err != nil {
			return nil, err
		}
		if err := a.tel.observeRedisStore(rs); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, func() { _ = rs.Close() }) // before the client closes
		if err := rs.Load(ctx); err != nil {
			return nil, err
		}
		a.redisHealth = redisconn.NewHealth(a.redis, a.cfg.Redis.Addrs, time.Second, a.log, rs.Load)
		runs = append(runs, a.redisHealth.Run)
		a.stores.limits = rs
		if tr := a.tel.tracer(); tr != nil {
			a.stores.limits = traceStore(rs, tr)
		}
		ks, err := redisauth.NewKeyStore(a.apiKeysRedis())
		if err != nil {
			return nil, err
		}
		a.stores.apiKeys = ks
		a.stores.jwtRevocations = redisrevoke.New(a.redis, redisrevoke.Config{Prefix: prefix + jtiKeys})
	} else {
		a.stores.webhookReplay = webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})
		a.stores.limits = fallback
		a.stores.apiKeys = &authn.MemoryKeyStore{}
		a.stores.jwtRevocations = jwtauth.NewMemoryRevocations(nil)
	}
	return runs, nil
}

// fallbackOptions are the options of the in-process store: the store itself without Redis;
// with Redis, the local failure policy's fallback, which decides only while Redis is out, so
// it gets 16 shards per P (enough that its locks are not contended) instead of the default
// 256, each of which costs about 1 KiB however few keys it holds: 240 KiB less of an idle
// heap on one P (issue 19).
func fallbackOptions(redis bool) memstore.Options {
	if !redis {
		return memstore.Options{}
	}
	return memstore.Options{Shards: min(256, 16*runtime.GOMAXPROCS(0))}
}

// build turns one config into the service's capabilities and its generation: the background
// work they need (JWKS refresh, cache invalidation), which runs while this config is the
// running one. It is called at start and on every reload; an error keeps the running config.
func (a *app) build(ctx context.Context, cfg *config.File) (*service.Deps, *generation, error) {
	a.next = building{}
	d := &service.Deps{Version: cfg.Version}
	builders := []struct {
		name    string
		section config.Section
		build   func(*config.File, *service.Deps) error
	}{
		{"webhooks", cfg.Webhooks, a.buildWebhooks},
		{"rate_limit", cfg.RateLimit, a.buildRateLimit},
		{"authn", cfg.Authn, a.buildAuthn},
		{"authz", cfg.Authz, a.buildAuthz},
		{"envoy", cfg.Envoy, a.buildEnvoy},
	}
	for _, b := range builders {
		if b.build == nil {
			if !b.section.IsZero() {
				return nil, nil, b.section.Errorf(b.name, "this Warden does not support this section yet")
			}
			continue
		}
		if err := b.build(cfg, d); err != nil {
			return nil, nil, err
		}
	}
	gen := &generation{runs: a.next.runs}
	if a.tel != nil {
		a.tel.setGuards(a.next.guards)
		a.tel.apiKeys.Store(a.next.keys)
	}
	a.next.runs = nil
	return d, gen, nil
}

// observeConfig, when set (by TestExampleConfigsUnchanged only), receives what each builder
// passes to its capability's constructor, so that a test can show that a config file keeps
// building the same capabilities.
var observeConfig func(name string, cfg any)

func observe(name string, cfg any) {
	if observeConfig != nil {
		observeConfig(name, cfg)
	}
}

// fieldError is a mistake at prefix.field in section s, with the field's line.
func fieldError(s config.Section, prefix, field, msg string) error {
	return s.Errorf(prefix+"."+field, "%s", msg)
}

// first returns the first error of a joined error (config errors are reported one at a
// time, one line each).
func first(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		if errs := j.Unwrap(); len(errs) > 0 {
			return first(errs[0])
		}
	}
	return err
}
