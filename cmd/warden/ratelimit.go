package main

import (
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/service"
)

// rateLimitSection is the rate_limit section: limiter.Config (its domains in
// envoyproxy/ratelimit's shape, with Warden's additions: algorithm, any period, burst, tiers,
// failure policy), and the rate-limit headers the service writes.
type rateLimitSection struct {
	limiter.Config `yaml:",inline"`
	// Headers chooses the rate-limit headers of Check and ext_authz answers: ietf (default:
	// RateLimit-Policy, RateLimit), x-ratelimit (X-RateLimit-Limit, -Remaining, -Reset) or
	// both.
	Headers limiter.HeaderStyle `yaml:"headers"`
}

// rateLimitDomains decodes the section's domains and checks them, with errors naming their
// lines.
func rateLimitDomains(s config.Section) ([]limiter.Domain, error) {
	var c rateLimitSection
	if err := s.Decode("rate_limit", &c); err != nil {
		return nil, err
	}
	if err := limiter.ValidateDomains(c.Domains); err != nil {
		return nil, s.Position(err)
	}
	return c.Domains, nil
}

func (a *app) buildRateLimit(cfg *config.File, d *service.Deps) error {
	var c rateLimitSection
	if err := cfg.RateLimit.Decode("rate_limit", &c); err != nil {
		return err
	}
	c.Store, c.Fallback, c.Logger, c.Meter = a.stores.limits, a.stores.limitsFallback, a.log, a.tel.meter
	c.PeerStats = a.peer.forConfig(cfg, a.tel.reg)
	observe("rate_limit", c.Config)
	l, err := limiter.New(c.Config)
	if err != nil {
		return cfg.RateLimit.Position(err)
	}
	d.Limiter = l
	d.Headers.RateLimit = c.Headers
	observe("rate_limit.headers", d.Headers.RateLimit)
	return nil
}
