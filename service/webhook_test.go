package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authn/webhook/redisreplay"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/service"
)

const ghSecret = "a-github-webhook-secret-of-some-length"

func webhookServer(t *testing.T, replay webhook.ReplayStore, now time.Time) wardenv1.WardenServiceClient {
	t.Helper()
	v, err := webhook.New(webhook.Config{
		Sources: []webhook.Source{{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}, Replay: true}},
		Replay:  replay,
		Now:     func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Webhooks: v}}))
}

func TestVerifyWebhook(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := webhookServer(t, webhook.NewMemoryReplay(webhook.MemoryReplayConfig{Now: func() time.Time { return now }}), now)
	ctx := context.Background()
	body := []byte(`{"action":"opened"}`)
	src := webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}}
	h, err := webhook.Sign(src, "delivery-1", now, body)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := c.VerifyWebhook(ctx, &wardenv1.VerifyWebhookRequest{Source: "gh", Headers: h, Body: body})
	if err != nil || !resp.Valid || resp.EventId != "delivery-1" || resp.Duplicate {
		t.Fatalf("first delivery: got %v, %v; want valid, event id delivery-1, not duplicate", resp, err)
	}
	resp, err = c.VerifyWebhook(ctx, &wardenv1.VerifyWebhookRequest{Source: "gh", Headers: h, Body: body})
	if err != nil || resp.Valid || !resp.Duplicate || resp.Reason != wardenv1.DenyReason_DENY_REASON_DUPLICATE {
		t.Fatalf("replayed delivery: got %v, %v; want invalid duplicate", resp, err)
	}
	tampered := append([]byte(nil), body...)
	tampered[3] ^= 1
	resp, err = c.VerifyWebhook(ctx, &wardenv1.VerifyWebhookRequest{Source: "gh", Headers: h, Body: tampered})
	if err != nil || resp.Valid || resp.Reason != wardenv1.DenyReason_DENY_REASON_NO_MATCHING_SIGNATURE {
		t.Fatalf("tampered body: got %v, %v; want NO_MATCHING_SIGNATURE", resp, err)
	}
	resp, err = c.VerifyWebhook(ctx, &wardenv1.VerifyWebhookRequest{Source: "nope", Headers: h, Body: body})
	if err != nil || resp.Valid || resp.Reason != wardenv1.DenyReason_DENY_REASON_UNKNOWN_SOURCE {
		t.Fatalf("unknown source: got %v, %v; want UNKNOWN_SOURCE", resp, err)
	}

	_, err = c.VerifyWebhook(ctx, &wardenv1.VerifyWebhookRequest{Headers: h, Body: body})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("no source: got %v, want INVALID_ARGUMENT", err)
	}
	var field string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			field = br.FieldViolations[0].Field
		}
	}
	if field != "source" {
		t.Errorf("field violation: got %q, want %q", field, "source")
	}
}

func TestVerifyWebhookFailsClosedWhenReplayStoreIsDown(t *testing.T) {
	r := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	now := time.Now()
	c := webhookServer(t, redisreplay.New(rc, redisreplay.Config{}), now)
	body := []byte(`{}`)
	h, _ := webhook.Sign(webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{ghSecret}}, "d-2", now, body)
	r.Stop()
	resp, err := c.VerifyWebhook(context.Background(), &wardenv1.VerifyWebhookRequest{Source: "gh", Headers: h, Body: body})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("replay store down: got %v, %v; want UNAVAILABLE", resp, err)
	}
}

func TestVerifyWebhookNotConfigured(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger()}))
	_, err := c.VerifyWebhook(context.Background(), &wardenv1.VerifyWebhookRequest{Source: "gh"})
	if st := status.Convert(err); st.Code() != codes.Unimplemented || st.Message() == "" {
		t.Fatalf("got %v, want UNIMPLEMENTED naming what is missing", err)
	}
}
