package main

import (
	"context"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authn/webhook/redisreplay"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// stores are the long-lived state Warden keeps across config reloads: in Redis when it is
// configured, in this process otherwise. A reload builds new capabilities on the same stores,
// so that, for example, a replayed webhook is still refused after a reload.
type stores struct {
	webhookReplay webhook.ReplayStore
}

func (a *app) openStores() error {
	if a.redis != nil {
		a.stores.webhookReplay = redisreplay.New(a.redis, redisreplay.Config{Prefix: a.cfg.Redis.KeyPrefix + "webhook:"})
	} else {
		a.stores.webhookReplay = webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})
	}
	return nil
}

// build turns one config into the service's capabilities. It is called at start and on
// every reload; an error keeps the running config.
func (a *app) build(ctx context.Context, cfg *config.File) (*service.Deps, error) {
	d := &service.Deps{Version: cfg.Version}
	builders := []struct {
		name    string
		section config.Section
		build   func(*config.File, *service.Deps) error
	}{
		{"webhooks", cfg.Webhooks, a.buildWebhooks},
		{"rate_limit", cfg.RateLimit, nil},
		{"authn", cfg.Authn, nil},
		{"authz", cfg.Authz, a.buildAuthz},
		{"envoy", cfg.Envoy, nil},
	}
	for _, b := range builders {
		if b.build == nil {
			if !b.section.IsZero() {
				return nil, &config.Error{File: cfg.Path, Line: b.section.Line(), Field: b.name, Msg: "this Warden does not support this section yet"}
			}
			continue
		}
		if err := b.build(cfg, d); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// fieldError turns a capability's validation error that carries a field path into a
// *config.Error with the field's line.
func fieldError(s config.Section, prefix, field, msg string) error {
	path := prefix + "." + field
	return &config.Error{File: s.File(), Line: s.FieldLine(path), Field: path, Msg: msg}
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
