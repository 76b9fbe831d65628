package main

import (
	"github.com/wardenhq/warden/authz"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// buildAuthz compiles the authz section (roles, ownership, routes) into a policy. The
// section's YAML is authz.Config as is.
func (a *app) buildAuthz(cfg *config.File, d *service.Deps) error {
	if cfg.Authz.IsZero() {
		return nil
	}
	var c authz.Config
	if err := cfg.Authz.Decode("authz", &c); err != nil {
		return err
	}
	observe("authz", c)
	p, err := authz.Compile(c)
	if err != nil {
		return cfg.Authz.Position(err)
	}
	d.Policy = p
	d.Auditor = authz.NewAuditor(a.log.With("log", "audit"))
	return nil
}
