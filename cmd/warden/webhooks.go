package main

import (
	"fmt"
	"time"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/service"
)

// webhooksYAML is the webhooks section.
type webhooksYAML struct {
	// ReplayTimeout caps one replay store call (Redis) on the request path; its budget is the
	// caller's deadline less a margin for answering. Default 500ms.
	ReplayTimeout time.Duration `yaml:"replay_timeout"`
	// ReplayStatus is the HTTP status of a replayed delivery: 409 (default) or 200.
	ReplayStatus int                 `yaml:"replay_status"`
	Sources      []webhookSourceYAML `yaml:"sources"`
}

type webhookSourceYAML struct {
	Name string `yaml:"name"`
	// Scheme is standard_webhooks, stripe, github, slack or generic.
	Scheme     string          `yaml:"scheme"`
	Secrets    []config.Secret `yaml:"secrets"`
	Tolerance  time.Duration   `yaml:"tolerance"`
	MaxPayload int             `yaml:"max_payload"`
	Replay     bool            `yaml:"replay"`
	ReplayTTL  time.Duration   `yaml:"replay_ttl"`
	Generic    struct {
		SignatureHeader string `yaml:"signature_header"`
		Prefix          string `yaml:"prefix"`
		Encoding        string `yaml:"encoding"` // hex (default) or base64
		TimestampHeader string `yaml:"timestamp_header"`
		IDHeader        string `yaml:"id_header"`
		Template        string `yaml:"template"`
	} `yaml:"generic"`
}

func webhookSources(s config.Section) ([]webhook.Source, error) {
	var y webhooksYAML
	if err := s.Decode("webhooks", &y); err != nil {
		return nil, err
	}
	out := make([]webhook.Source, 0, len(y.Sources))
	for i, ys := range y.Sources {
		scheme, ok := webhook.ParseScheme(ys.Scheme)
		if !ok {
			return nil, fieldError(s, "webhooks", fmt.Sprintf("sources[%d].scheme", i),
				fmt.Sprintf("unknown scheme %q: use standard_webhooks, stripe, github, slack or generic", ys.Scheme))
		}
		src := webhook.Source{
			Name: ys.Name, Scheme: scheme, Tolerance: ys.Tolerance, MaxPayload: ys.MaxPayload,
			Replay: ys.Replay, ReplayTTL: ys.ReplayTTL,
			Generic: webhook.GenericConfig{
				SignatureHeader: ys.Generic.SignatureHeader, Prefix: ys.Generic.Prefix,
				TimestampHeader: ys.Generic.TimestampHeader, IDHeader: ys.Generic.IDHeader,
				Template: ys.Generic.Template,
			},
		}
		switch ys.Generic.Encoding {
		case "", "hex":
			src.Generic.Encoding = webhook.Hex
		case "base64":
			src.Generic.Encoding = webhook.Base64
		default:
			return nil, fieldError(s, "webhooks", fmt.Sprintf("sources[%d].generic.encoding", i),
				fmt.Sprintf("must be hex or base64, not %q", ys.Generic.Encoding))
		}
		for _, sec := range ys.Secrets {
			src.Secrets = append(src.Secrets, sec.Reveal())
		}
		out = append(out, src)
	}
	return out, nil
}

func (a *app) buildWebhooks(cfg *config.File, d *service.Deps) error {
	if cfg.Webhooks.IsZero() {
		return nil
	}
	sources, err := webhookSources(cfg.Webhooks)
	if err != nil {
		return err
	}
	var y webhooksYAML
	if err := cfg.Webhooks.Decode("webhooks", &y); err != nil {
		return err
	}
	observe("webhooks", webhook.Config{Sources: sources})
	observe("webhooks.replay", struct {
		ReplayTimeout time.Duration
		ReplayStatus  int
	}{y.ReplayTimeout, y.ReplayStatus})
	v, err := webhook.New(webhook.Config{Sources: sources, Replay: a.stores.webhookReplay,
		ReplayGuard: a.redisGuard("webhook_replay", y.ReplayTimeout), Logger: a.log})
	if err != nil {
		return cfg.Webhooks.Position(err)
	}
	d.Webhooks = v
	switch y.ReplayStatus {
	case 0, 409, 200:
		d.WebhookReplayStatus = int32(y.ReplayStatus)
	default:
		return fieldError(cfg.Webhooks, "webhooks", "replay_status", "want 409 (the default) or 200")
	}
	return nil
}
