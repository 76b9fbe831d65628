package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/authn/webhook/replaytest"
	"github.com/wardenhq/warden/internal/budget"
)

func TestMemoryReplayConformance(t *testing.T) {
	replaytest.Run(t, func(t *testing.T) webhook.ReplayStore {
		return webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})
	})
}

// clock is a manual clock for one test goroutine.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestMemoryReplayExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	s := webhook.NewMemoryReplay(webhook.MemoryReplayConfig{Now: c.now})
	ctx := context.Background()
	steps := []struct {
		at   time.Duration // since start
		want bool
	}{
		{0, true},
		{time.Minute - 1, false},
		{time.Minute, true}, // expired exactly at ttl: recorded again
		{time.Minute + time.Second, false},
	}
	start := c.t
	for _, st := range steps {
		c.t = start.Add(st.at)
		got, err := s.Seen(ctx, "src", "evt_1", time.Minute)
		if err != nil || got != st.want {
			t.Errorf("at +%v: Seen = %v, %v; want %v, nil", st.at, got, err, st.want)
		}
	}
}

func TestMemoryReplayBounded(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	const max = 16 * 4 // four per shard
	s := webhook.NewMemoryReplay(webhook.MemoryReplayConfig{MaxEntries: max, Now: c.now})
	ctx := context.Background()
	var (
		full     int
		accepted []string
	)
	for i := range 4 * max {
		id := fmt.Sprint("evt_", i)
		_, err := s.Seen(ctx, "src", id, time.Minute)
		switch {
		case errors.Is(err, webhook.ErrReplayFull):
			full++
		case err != nil:
			t.Fatalf("Seen: %v", err)
		default:
			accepted = append(accepted, id)
		}
	}
	if full < 2*max {
		t.Errorf("%d of %d inserts refused as full; want at least %d (capacity %d)", full, 4*max, 2*max, max)
	}
	// A remembered event is still a duplicate when the store is full: nothing was evicted.
	for _, id := range accepted {
		if got, err := s.Seen(ctx, "src", id, time.Minute); err != nil || got {
			t.Errorf("Seen(%s) when full = %v, %v; want false, nil", id, got, err)
		}
	}
	// Once records expire their room is free again.
	c.t = c.t.Add(time.Minute)
	for _, id := range accepted {
		if got, err := s.Seen(ctx, "src", id, time.Minute); err != nil || !got {
			t.Errorf("Seen(%s) after expiry = %v, %v; want true, nil", id, got, err)
		}
	}
}

// errStore fails every call.
type errStore struct{}

func (errStore) Seen(context.Context, string, string, time.Duration) (bool, error) {
	return false, errors.New("connection refused")
}

// countStore counts calls and delegates.
type countStore struct {
	webhook.ReplayStore
	mu    sync.Mutex
	calls []string
}

func (c *countStore) Seen(ctx context.Context, source, id string, ttl time.Duration) (bool, error) {
	c.mu.Lock()
	c.calls = append(c.calls, source+"|"+id+"|"+ttl.String())
	c.mu.Unlock()
	return c.ReplayStore.Seen(ctx, source, id, ttl)
}

func replaySources() []webhook.Source {
	srcs := sources(nil)
	for i := range srcs {
		srcs[i].Replay = true
	}
	return srcs
}

func TestVerifierReplay(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"object":"event","id":"` + stripeID + `","data":{"id":"in_1"}}`)
	for _, src := range replaySources() {
		t.Run(src.Name, func(t *testing.T) {
			store := &countStore{ReplayStore: webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})}
			v := newVerifier(t, now, []webhook.Source{src}, store)
			h, err := webhook.Sign(src, "evt_42", now, body)
			if err != nil {
				t.Fatal(err)
			}
			// A forgery must not burn the event: it is refused before the store is asked.
			forged := append([]byte(nil), body...)
			forged[0] = ' '
			if got := v.Verify(context.Background(), src.Name, webhook.Map(h), forged); got.Reason != webhook.NoMatchingSignature {
				t.Fatalf("forged Verify = %+v; want %v", got, webhook.NoMatchingSignature)
			}
			if len(store.calls) != 0 {
				t.Fatalf("store called for a forged delivery: %v", store.calls)
			}
			first := v.Verify(context.Background(), src.Name, webhook.Map(h), body)
			second := v.Verify(context.Background(), src.Name, webhook.Map(h), body)
			wantID := map[webhook.Scheme]string{webhook.StandardWebhooks: "evt_42", webhook.Stripe: stripeID, webhook.GitHub: "evt_42", webhook.Generic: "evt_42"}[src.Scheme]
			wantTS := now
			if src.Scheme == webhook.GitHub {
				wantTS = time.Time{}
			}
			got := []webhook.Result{first, second}
			want := []webhook.Result{
				{Valid: true, Reason: webhook.OK, EventID: wantID, Timestamp: wantTS, FirstSeen: true},
				{Reason: webhook.Duplicate, EventID: wantID, Timestamp: wantTS, Duplicate: true},
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("first and second Verify (-got +want):\n%s", diff)
			}
			if len(store.calls) != 2 {
				t.Errorf("store calls = %v; want 2", store.calls)
			}
		})
	}
}

// TestReplayKeyUnsignedID: GitHub's delivery header is not signed, so changing it must not
// make a replay look new.
func TestReplayKeyUnsignedID(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := replaySources()[webhook.GitHub-1]
	v := newVerifier(t, now, []webhook.Source{src}, webhook.NewMemoryReplay(webhook.MemoryReplayConfig{}))
	body := []byte(`{"action":"opened"}`)
	sig := webhook.SignGitHub(secretA, body)
	var got []webhook.Reason
	for _, id := range []string{"d-1", "d-2", ""} {
		got = append(got, v.Verify(context.Background(), src.Name, webhook.Map{"X-Hub-Signature-256": sig, "X-GitHub-Delivery": id}, body).Reason)
	}
	want := []webhook.Reason{webhook.OK, webhook.Duplicate, webhook.Duplicate}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("reasons (-got +want):\n%s", diff)
	}
}

// TestReplayKeyRotation: dropping one of two signatures (so that another secret matches)
// must not make a replay look new either.
func TestReplayKeyRotation(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := replaySources()[webhook.Slack-1]
	src.Secrets = []string{secretA, secretB}
	v := newVerifier(t, now, []webhook.Source{src}, webhook.NewMemoryReplay(webhook.MemoryReplayConfig{}))
	body := []byte("payload")
	var got []webhook.Reason
	for _, secret := range []string{secretA, secretB} {
		h := webhook.Map{"X-Slack-Signature": webhook.SignSlack(secret, now, body), "X-Slack-Request-Timestamp": "1700000000"}
		got = append(got, v.Verify(context.Background(), src.Name, h, body).Reason)
	}
	want := []webhook.Reason{webhook.OK, webhook.Duplicate}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("reasons (-got +want):\n%s", diff)
	}
}

func TestReplayStoreFailureFailsClosed(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := replaySources()[0]
	v := newVerifier(t, now, []webhook.Source{src}, errStore{})
	body := []byte(`{}`)
	h, err := webhook.Sign(src, "evt_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	got := v.Verify(context.Background(), src.Name, webhook.Map(h), body)
	want := webhook.Result{Reason: webhook.Unavailable, EventID: "evt_1", Timestamp: now}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Verify with a failing store (-got +want):\n%s", diff)
	}
}

// TestStaleNotRecorded: a delivery outside the tolerance is not recorded, so it does not
// burn the event id.
func TestStaleNotRecorded(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := replaySources()[0]
	store := &countStore{ReplayStore: webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})}
	v := newVerifier(t, now, []webhook.Source{src}, store)
	h, err := webhook.Sign(src, "evt_1", now.Add(-time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Verify(context.Background(), src.Name, webhook.Map(h), nil); got.Reason != webhook.Stale || len(store.calls) != 0 {
		t.Errorf("Verify = %+v with store calls %v; want %v and no call", got, store.calls, webhook.Stale)
	}
}

func TestReplayTTL(t *testing.T) {
	now := time.Unix(1700000000, 0)
	tests := []struct {
		src  webhook.Source
		want string
	}{
		{webhook.Source{Name: "a", Scheme: webhook.Slack, Secrets: []string{secretA}, Replay: true}, "11m0s"},
		{webhook.Source{Name: "a", Scheme: webhook.Slack, Secrets: []string{secretA}, Replay: true, Tolerance: time.Minute}, "3m0s"},
		{webhook.Source{Name: "a", Scheme: webhook.GitHub, Secrets: []string{secretA}, Replay: true}, "24h0m0s"},
		{webhook.Source{Name: "a", Scheme: webhook.GitHub, Secrets: []string{secretA}, Replay: true, ReplayTTL: time.Hour}, "1h0m0s"},
	}
	for _, tt := range tests {
		store := &countStore{ReplayStore: webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})}
		v := newVerifier(t, now, []webhook.Source{tt.src}, store)
		h, err := webhook.Sign(tt.src, "", now, nil)
		if err != nil {
			t.Fatal(err)
		}
		v.Verify(context.Background(), "a", webhook.Map(h), nil)
		if len(store.calls) != 1 || !cmp.Equal(store.calls[0][len(store.calls[0])-len(tt.want):], tt.want) {
			t.Errorf("%v tolerance %v: store calls %v; want one with ttl %s", tt.src.Scheme, tt.src.Tolerance, store.calls, tt.want)
		}
	}
}

func TestConcurrentDeliveriesMemory(t *testing.T) {
	replaytest.ConcurrentDeliveries(t, []webhook.ReplayStore{webhook.NewMemoryReplay(webhook.MemoryReplayConfig{})}, 100)
}

// hangReplay is a replay store whose Seen hangs, ignoring its context.
type hangReplay struct {
	calls   atomic.Int32
	release chan struct{}
}

func (h *hangReplay) Seen(context.Context, string, string, time.Duration) (bool, error) {
	h.calls.Add(1)
	<-h.release
	return true, nil
}

// TestReplayGuard: with a guard, a replay store that hangs makes a delivery Unavailable
// (refused, never accepted unchecked) before the caller's deadline, and the hangs open the
// breaker so that the store is no longer called.
func TestReplayGuard(t *testing.T) {
	now := time.Unix(1700000000, 0)
	store := &hangReplay{release: make(chan struct{})}
	defer close(store.release)
	src := webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{"a-github-webhook-secret-of-32-bytes!"}, Replay: true}
	g := budget.New(budget.Config{Name: "webhook_replay", Cap: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	v, err := webhook.New(webhook.Config{Sources: []webhook.Source{src}, Replay: store, ReplayGuard: g, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		body := []byte(fmt.Sprintf(`{"n":%d}`, i))
		h, err := webhook.Sign(src, fmt.Sprint("d-", i), now, body)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r := v.Verify(ctx, "gh", webhook.Map(h), body)
		late := ctx.Err()
		cancel()
		if r.Valid || r.Reason != webhook.Unavailable || late != nil {
			t.Fatalf("delivery %d: got %+v (caller's context: %v), want Unavailable before the deadline", i, r, late)
		}
	}
	if got := store.calls.Load(); got != 5 {
		t.Errorf("store calls = %d, want 5 (then the breaker opens)", got)
	}
}
