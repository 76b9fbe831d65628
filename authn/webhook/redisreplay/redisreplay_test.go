package redisreplay_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authn/webhook/redisreplay"
	"github.com/wardenhq/warden/authn/webhook/replaytest"
	"github.com/wardenhq/warden/internal/redistest"
)

func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	n := 0
	replaytest.Run(t, func(t *testing.T) webhook.ReplayStore {
		n++ // a fresh key space per subtest on the same server
		return redisreplay.New(c, redisreplay.Config{Prefix: "test" + string(rune('a'+n)) + ":"})
	})
}

// TestKeyTTL checks that a record carries the ttl (read with PTTL, not by waiting).
func TestKeyTTL(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	s := redisreplay.New(c, redisreplay.Config{})
	ctx := context.Background()
	const ttl = 11*time.Minute + 500*time.Millisecond
	if first, err := s.Seen(ctx, "billing", "evt_1", ttl); err != nil || !first {
		t.Fatalf("Seen = %v, %v; want true, nil", first, err)
	}
	key := s.Key("billing", "evt_1")
	if key != "warden:webhook:7:billing:evt_1" {
		t.Errorf("Key = %q; want %q", key, "warden:webhook:7:billing:evt_1")
	}
	got, err := c.PTTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got <= ttl-time.Minute || got > ttl {
		t.Errorf("PTTL = %v; want within (%v, %v]", got, ttl-time.Minute, ttl)
	}
}

func TestRedisDownFailsClosed(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv)
	srv.Stop()
	s := redisreplay.New(c, redisreplay.Config{})
	if first, err := s.Seen(context.Background(), "billing", "evt_1", time.Minute); err == nil {
		t.Fatalf("Seen with Redis down = %v, nil; want an error", first)
	}
	now := time.Unix(1700000000, 0)
	v, src := newVerifier(t, s, now)
	h, err := webhook.Sign(src, "msg_1", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := v.Verify(context.Background(), src.Name, webhook.Map(h), nil)
	want := webhook.Result{Reason: webhook.Unavailable, EventID: "msg_1", Timestamp: now}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Verify with Redis down (-got +want):\n%s", diff)
	}
}

func newVerifier(t *testing.T, store webhook.ReplayStore, now time.Time) (*webhook.Verifier, webhook.Source) {
	t.Helper()
	src := webhook.Source{
		Name: "billing", Scheme: webhook.StandardWebhooks, Replay: true,
		Secrets: []string{"whsec_c2VjcmV0LUEtMDEyMzQ1Njc4OWFiY2RlZmdoaWo="},
	}
	v, err := webhook.New(webhook.Config{Sources: []webhook.Source{src}, Replay: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return v, src
}

// TestConcurrentDeliveries: 100 deliveries of one event at once, through two Verifiers (two
// replicas, two clients) on one Redis: exactly one is first.
func TestConcurrentDeliveries(t *testing.T) {
	srv := redistest.Start(t)
	replaytest.ConcurrentDeliveries(t, []webhook.ReplayStore{
		redisreplay.New(newClient(t, srv), redisreplay.Config{}),
		redisreplay.New(newClient(t, srv), redisreplay.Config{}),
	}, 100)
}

// TestRetriedRecordIsFirst: the reply to the first delivery's SET is lost with its connection
// after Redis ran it, and go-redis sends the SET again on a new connection (its MaxRetries). The
// delivery is still the first, and a real second delivery is still a replay. With a constant
// value the resent SET NX found the delivery's own record and refused the event.
func TestRetriedRecordIsFirst(t *testing.T) {
	srv := redistest.Start(t)
	proxy := redistest.StartLoseReply(t, srv.Addr(), "set")
	c := redis.NewClient(&redis.Options{Addr: proxy, MaxRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	s := redisreplay.New(c, redisreplay.Config{})
	ctx := context.Background()
	if first, err := s.Seen(ctx, "billing", "evt_1", time.Minute); err != nil || !first {
		t.Fatalf("Seen after a lost reply = %v, %v; want true, nil (the resent SET is this delivery's own)", first, err)
	}
	if first, err := s.Seen(ctx, "billing", "evt_1", time.Minute); err != nil || first {
		t.Fatalf("Seen of a second delivery = %v, %v; want false, nil", first, err)
	}
	other := redisreplay.New(c, redisreplay.Config{}) // another replica: its tokens differ
	if first, err := other.Seen(ctx, "billing", "evt_1", time.Minute); err != nil || first {
		t.Fatalf("Seen of a second delivery on another replica = %v, %v; want false, nil", first, err)
	}
}
