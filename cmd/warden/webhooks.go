package main

import (
	"time"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// webhooksSection is the webhooks section: webhook.Config, and two settings of the server
// around it.
type webhooksSection struct {
	webhook.Config `yaml:",inline"`
	// ReplayTimeout caps one replay store call (Redis) on the request path; its budget is the
	// caller's deadline less a margin for answering. Default 500ms.
	ReplayTimeout time.Duration `yaml:"replay_timeout"`
	// ReplayStatus is the HTTP status of a replayed delivery: 409 (default) or 200.
	ReplayStatus int `yaml:"replay_status"`
}

func (a *app) buildWebhooks(cfg *config.File, d *service.Deps) error {
	if cfg.Webhooks.IsZero() {
		return nil
	}
	var c webhooksSection
	if err := cfg.Webhooks.Decode("webhooks", &c); err != nil {
		return err
	}
	c.Replay, c.ReplayGuard, c.Logger = a.stores.webhookReplay, a.redisGuard("webhook_replay", c.ReplayTimeout), a.log
	observe("webhooks", webhook.Config{Sources: c.Sources})
	observe("webhooks.replay", struct {
		ReplayTimeout time.Duration
		ReplayStatus  int
	}{c.ReplayTimeout, c.ReplayStatus})
	v, err := webhook.New(c.Config)
	if err != nil {
		return cfg.Webhooks.Position(err)
	}
	d.Webhooks = v
	switch c.ReplayStatus {
	case 0, 409, 200:
		d.WebhookReplayStatus = int32(c.ReplayStatus)
	default:
		return cfg.Webhooks.Errorf("webhooks.replay_status", "want 409 (the default) or 200")
	}
	return nil
}
