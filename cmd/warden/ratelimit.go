package main

import (
	"fmt"
	"time"

	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/service"
)

// rateLimitYAML is the rate_limit section: limiter settings and domains in
// envoyproxy/ratelimit's shape, with Warden's additions (algorithm, any period, burst, tiers,
// failure policy).
type rateLimitYAML struct {
	// StoreTimeout is the ceiling of a store call (Redis) on the request path; below it the
	// call gets the caller's deadline less a margin. Default 1s.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// Replicas is the number of Warden replicas, for the local failure policy's share of each
	// limit. Default 1.
	Replicas int `yaml:"replicas"`
	// BreakerFailures consecutive store failures (connection errors, requests on the wire
	// timing out; not calls kept waiting by load) open the circuit breaker for
	// BreakerCooldown, then one real request probes. Defaults 5 and 250ms.
	BreakerFailures int           `yaml:"breaker_failures"`
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
	// OverLimitCacheSize bounds the cache of counters known to be over their limit (no store
	// call while they are). Default 10000; -1 turns it off.
	OverLimitCacheSize int `yaml:"over_limit_cache_size"`
	// Headers chooses the rate-limit headers of Check and ext_authz answers: ietf (default:
	// RateLimit-Policy, RateLimit), x-ratelimit (X-RateLimit-Limit, -Remaining, -Reset) or
	// both.
	Headers string       `yaml:"headers"`
	Domains []domainYAML `yaml:"domains"`
}

type domainYAML struct {
	Domain string `yaml:"domain"`
	// FailurePolicy is fail_open (default), fail_closed or local.
	FailurePolicy string `yaml:"failure_policy"`
	// HashTagKey names a descriptor key whose value places a request's counters on one Redis
	// Cluster slot. Default: the domain (all of its counters on one slot).
	HashTagKey  string           `yaml:"hash_tag_key"`
	Descriptors []descriptorYAML `yaml:"descriptors"`
}

type descriptorYAML struct {
	Key            string           `yaml:"key"`
	Value          string           `yaml:"value"`
	RateLimit      *rateLimitRule   `yaml:"rate_limit"`
	ShadowMode     bool             `yaml:"shadow_mode"`
	DetailedMetric bool             `yaml:"detailed_metric"`
	ShareThreshold bool             `yaml:"share_threshold"`
	Descriptors    []descriptorYAML `yaml:"descriptors"`
}

type rateLimitRule struct {
	Name     string `yaml:"name"`
	Replaces []struct {
		Name string `yaml:"name"`
	} `yaml:"replaces"`
	Unlimited       bool   `yaml:"unlimited"`
	Unit            string `yaml:"unit"`
	RequestsPerUnit int64  `yaml:"requests_per_unit"`
	// Period replaces Unit with any duration (e.g. 30s, 5m).
	Period time.Duration `yaml:"period"`
	// Algorithm is token_bucket (default), sliding_window, fixed_window or sliding_log.
	Algorithm string `yaml:"algorithm"`
	// Burst is the token bucket's size. Default requests_per_unit.
	Burst int64                    `yaml:"burst"`
	Tiers map[string]tierLimitYAML `yaml:"tiers"`
}

type tierLimitYAML struct {
	Unlimited       bool          `yaml:"unlimited"`
	Unit            string        `yaml:"unit"`
	RequestsPerUnit int64         `yaml:"requests_per_unit"`
	Period          time.Duration `yaml:"period"`
	Burst           int64         `yaml:"burst"`
}

// rateLimitDomains converts the section's domains, with errors naming their lines.
func rateLimitDomains(s config.Section, y rateLimitYAML) ([]limiter.Domain, error) {
	out := make([]limiter.Domain, len(y.Domains))
	for i, yd := range y.Domains {
		path := fmt.Sprintf("domains[%d]", i)
		d := limiter.Domain{Name: yd.Domain, HashTagKey: yd.HashTagKey}
		if yd.FailurePolicy != "" {
			p, err := limiter.ParseFailurePolicy(yd.FailurePolicy)
			if err != nil {
				return nil, fieldError(s, "rate_limit", path+".failure_policy", err.Error())
			}
			d.FailurePolicy = p
		}
		var err error
		if d.Descriptors, err = descriptors(s, path, yd.Descriptors); err != nil {
			return nil, err
		}
		out[i] = d
	}
	if err := limiter.ValidateDomains(out); err != nil {
		return nil, s.Position(err)
	}
	return out, nil
}

func descriptors(s config.Section, parent string, ys []descriptorYAML) ([]limiter.Descriptor, error) {
	if len(ys) == 0 {
		return nil, nil
	}
	out := make([]limiter.Descriptor, len(ys))
	for i, yd := range ys {
		path := fmt.Sprintf("%s.descriptors[%d]", parent, i)
		d := limiter.Descriptor{Key: yd.Key, Value: yd.Value, ShadowMode: yd.ShadowMode,
			DetailedMetric: yd.DetailedMetric, ShareThreshold: yd.ShareThreshold}
		if r := yd.RateLimit; r != nil {
			rl := &limiter.RateLimit{Name: r.Name, Unlimited: r.Unlimited, Unit: r.Unit,
				RequestsPerUnit: r.RequestsPerUnit, Period: r.Period, Burst: r.Burst}
			for _, rep := range r.Replaces {
				rl.Replaces = append(rl.Replaces, rep.Name)
			}
			if r.Algorithm != "" {
				a, err := limiter.ParseAlgorithm(r.Algorithm)
				if err != nil {
					return nil, fieldError(s, "rate_limit", path+".rate_limit.algorithm", err.Error())
				}
				rl.Algorithm = a
			}
			if len(r.Tiers) > 0 {
				rl.Tiers = make(map[string]limiter.TierLimit, len(r.Tiers))
				for name, t := range r.Tiers {
					rl.Tiers[name] = limiter.TierLimit{Unlimited: t.Unlimited, Unit: t.Unit,
						RequestsPerUnit: t.RequestsPerUnit, Period: t.Period, Burst: t.Burst}
				}
			}
			d.RateLimit = rl
		}
		var err error
		if d.Descriptors, err = descriptors(s, path, yd.Descriptors); err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func (a *app) buildRateLimit(cfg *config.File, d *service.Deps) error {
	var y rateLimitYAML
	if err := cfg.RateLimit.Decode("rate_limit", &y); err != nil {
		return err
	}
	domains, err := rateLimitDomains(cfg.RateLimit, y)
	if err != nil {
		return err
	}
	lc := limiter.Config{
		Store: a.stores.limits, Fallback: a.stores.limitsFallback, Domains: domains,
		Logger: a.log, Meter: a.tel.meter, StoreTimeout: y.StoreTimeout, Replicas: y.Replicas,
		BreakerFailures: y.BreakerFailures, BreakerCooldown: y.BreakerCooldown,
		OverLimitCacheSize: y.OverLimitCacheSize, PeerStats: a.peer.forConfig(cfg, a.tel.reg),
	}
	observe("rate_limit", lc)
	l, err := limiter.New(lc)
	if err != nil {
		return cfg.RateLimit.Position(err)
	}
	d.Limiter = l
	if y.Headers != "" {
		style, ok := limiter.ParseHeaderStyle(y.Headers)
		if !ok {
			return fieldError(cfg.RateLimit, "rate_limit", "headers", fmt.Sprintf("want ietf, x-ratelimit or both, not %q", y.Headers))
		}
		d.Headers.RateLimit = style
	}
	observe("rate_limit.headers", d.Headers.RateLimit)
	return nil
}
