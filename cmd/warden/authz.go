package main

import (
	"errors"

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
		var fe *authz.FieldError
		if errors.As(first(err), &fe) {
			return &config.Error{File: cfg.Path, Line: cfg.Authz.FieldLine(fe.Path), Field: fe.Path, Msg: fe.Err.Error()}
		}
		return &config.Error{File: cfg.Path, Line: cfg.Authz.Line(), Field: "authz", Msg: err.Error()}
	}
	d.Policy = p
	d.Auditor = authz.NewAuditor(a.log.With("log", "audit"))
	return nil
}
