package service_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/service"
)

type downReplay struct{}

func (downReplay) Seen(context.Context, string, string, time.Duration) (bool, error) {
	return false, errors.New("replay store down")
}

type downKeys struct{ authn.MemoryKeyStore }

func (*downKeys) Key(context.Context, string) (authn.KeyRecord, error) {
	return authn.KeyRecord{}, errors.New("key store down")
}

// TestCheckDependencyDownIsA503Decision: when the webhook replay store or the key store
// cannot answer, Check answers with a 503 denial carrying Retry-After, never an RPC error (so
// that a gateway that allows on errors still refuses) and never a 401 (so that clients retry).
func TestCheckDependencyDownIsA503Decision(t *testing.T) {
	now := time.Now()
	v, err := webhook.New(webhook.Config{
		Sources: []webhook.Source{{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}, Replay: true}},
		Replay:  downReplay{},
	})
	if err != nil {
		t.Fatal(err)
	}
	pepper, err := authn.NewPepper([]byte("a-pepper-of-at-least-thirty-two-bytes!!"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: &downKeys{}, Pepper: pepper, Env: authn.EnvLive, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	an, err := authn.NewAuthenticator(authn.Config{APIKeys: keys})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := authz.Compile(authz.Config{
		Roles: map[string]authz.RoleConfig{"user": {Permissions: []string{"things:read"}}},
		Routes: []authz.RouteConfig{
			{Name: "gh-hook", Method: "POST", Path: "/hooks/github", Webhook: "gh"},
			{Name: "api", Method: "GET", Path: "/v1/things", Action: "things:read", ResourceType: "thing"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{
		Policy: pol, Webhooks: v, Authn: &service.Authn{Authenticator: an, APIKeys: keys}}}))

	body := []byte(`{}`)
	h, err := webhook.Sign(webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}}, "d-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	lower := map[string]string{}
	for k, val := range h {
		lower[toLower(k)] = val
	}
	key, _, err := authn.NewAPIKey(authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		req   *wardenv1.CheckRequest
		stage wardenv1.CheckStage
	}{
		{"webhook", &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "POST", Path: "/hooks/github", Headers: lower, Body: body}},
			wardenv1.CheckStage_CHECK_STAGE_WEBHOOK},
		{"api key", &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/things",
			Headers: map[string]string{"x-api-key": key}}}, wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE},
	} {
		resp, err := c.Check(context.Background(), tt.req)
		if err != nil {
			t.Fatalf("%s: Check error %v, want a decision", tt.name, err)
		}
		if resp.Allowed || resp.HttpStatus != 503 || resp.Stage != tt.stage || header(resp.ResponseHeaders, "Retry-After") == "" {
			t.Errorf("%s: got %v, want a 503 denial at stage %v with Retry-After", tt.name, resp, tt.stage)
		}
	}
}
