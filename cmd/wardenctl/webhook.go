package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/wardenhq/warden/authn/webhook"
)

// webhookFlags are shared by sign and verify. The secret comes from a file or an environment
// variable, never from a flag value (which would stay in the shell history).
type webhookFlags struct {
	scheme, secretFile, secretEnv, bodyFile, source string
	generic                                         webhook.GenericConfig
	encoding                                        string
}

func (w *webhookFlags) register(fs interface {
	StringVar(*string, string, string, string)
}) {
	fs.StringVar(&w.scheme, "scheme", "", "standard_webhooks, stripe, github, slack or generic")
	fs.StringVar(&w.secretFile, "secret-file", "", "file holding the secret")
	fs.StringVar(&w.secretEnv, "secret-env", "", "environment variable holding the secret")
	fs.StringVar(&w.bodyFile, "body", "-", "file holding the raw body (- for stdin)")
	fs.StringVar(&w.source, "source", "cli", "source name")
	fs.StringVar(&w.generic.SignatureHeader, "generic-signature-header", "", "generic: signature header")
	fs.StringVar(&w.generic.Prefix, "generic-prefix", "", "generic: signature prefix (e.g. sha256=)")
	fs.StringVar(&w.encoding, "generic-encoding", "hex", "generic: hex or base64")
	fs.StringVar(&w.generic.TimestampHeader, "generic-timestamp-header", "", "generic: timestamp header")
	fs.StringVar(&w.generic.IDHeader, "generic-id-header", "", "generic: id header")
	fs.StringVar(&w.generic.Template, "generic-template", "", "generic: signed string template ({id} {timestamp} {body})")
}

func (w *webhookFlags) load(c *cli) (webhook.Source, []byte, error) {
	var src webhook.Source
	scheme, ok := webhook.ParseScheme(w.scheme)
	if !ok {
		return src, nil, fmt.Errorf("-scheme: unknown scheme %q", w.scheme)
	}
	var secret string
	switch {
	case w.secretFile != "" && w.secretEnv != "":
		return src, nil, fmt.Errorf("give -secret-file or -secret-env, not both")
	case w.secretFile != "":
		b, err := os.ReadFile(w.secretFile)
		if err != nil {
			return src, nil, err
		}
		secret = strings.TrimRight(string(b), "\r\n")
	case w.secretEnv != "":
		v, ok := c.env(w.secretEnv)
		if !ok || v == "" {
			return src, nil, fmt.Errorf("environment variable %s is not set", w.secretEnv)
		}
		secret = v
	default:
		return src, nil, fmt.Errorf("-secret-file or -secret-env is required")
	}
	var body []byte
	var err error
	if w.bodyFile == "-" {
		body, err = io.ReadAll(c.stdin)
	} else {
		body, err = os.ReadFile(w.bodyFile)
	}
	if err != nil {
		return src, nil, err
	}
	src = webhook.Source{Name: w.source, Scheme: scheme, Secrets: []string{secret}, Generic: w.generic}
	switch w.encoding {
	case "hex":
		src.Generic.Encoding = webhook.Hex
	case "base64":
		src.Generic.Encoding = webhook.Base64
	default:
		return src, nil, fmt.Errorf("-generic-encoding must be hex or base64")
	}
	return src, body, nil
}

// webhookSign prints the headers a sender would attach, one "name: value" per line.
func webhookSign(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("webhook sign", c)
	var w webhookFlags
	w.register(fs)
	id := fs.String("id", "", "event id (standard_webhooks, generic with {id}; github delivery id)")
	ts := fs.Int64("timestamp", 0, "Unix seconds to sign (default now)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, body, err := w.load(c)
	if err != nil {
		return err
	}
	t := time.Now()
	if *ts != 0 {
		t = time.Unix(*ts, 0)
	}
	h, err := webhook.Sign(src, *id, t, body)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(h))
	for k := range h {
		names = append(names, k)
	}
	sort.Strings(names)
	lines := make([]string, len(names))
	for i, k := range names {
		lines[i] = k + ": " + h[k]
	}
	return c.result(strings.Join(lines, "\n"), map[string]any{"headers": h})
}

// webhookVerify checks a delivery locally (no replay protection: that needs the server).
func webhookVerify(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("webhook verify", c)
	var w webhookFlags
	w.register(fs)
	hs := headerFlags{}
	fs.Var(hs, "H", `delivery header "name: value" (repeatable)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	src, body, err := w.load(c)
	if err != nil {
		return err
	}
	v, err := webhook.New(webhook.Config{Sources: []webhook.Source{src}})
	if err != nil {
		return err
	}
	r := v.Verify(ctx, src.Name, webhook.Map(hs), body)
	if !r.Valid {
		return fmt.Errorf("invalid: %s", r.Reason)
	}
	return c.result(fmt.Sprintf("valid (event id %q, timestamp %v)", r.EventID, r.Timestamp),
		map[string]any{"valid": true, "event_id": r.EventID, "timestamp": r.Timestamp})
}
