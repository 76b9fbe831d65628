// Package replaytest is the conformance suite for webhook.ReplayStore implementations: run it
// from each implementation's tests with a constructor of fresh, empty stores.
//
// It checks what does not need a clock (first and duplicate, independence of sources and
// ids, one winner among concurrent calls, context cancellation, refused TTLs); expiry is the
// implementation's own test, with its own notion of time.
package replaytest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn/webhook"
)

// TTL is the ttl the suite passes: long enough that nothing expires during a test.
const TTL = time.Hour

// Run runs the suite. newStore returns a fresh, empty store for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) webhook.ReplayStore) {
	t.Run("FirstThenDuplicate", func(t *testing.T) {
		s := newStore(t)
		for i, want := range []bool{true, false, false} {
			got, err := s.Seen(context.Background(), "src", "evt_1", TTL)
			if err != nil || got != want {
				t.Fatalf("call %d: Seen = %v, %v; want %v, nil", i, got, err, want)
			}
		}
	})
	t.Run("Independent", func(t *testing.T) {
		s := newStore(t)
		// "a"+"b:c" and "a:b"+"c" must not collide, whatever the store's key layout.
		pairs := [][2]string{{"src", "evt_1"}, {"src", "evt_2"}, {"other", "evt_1"}, {"a", "b:c"}, {"a:b", "c"}}
		for _, p := range pairs {
			got, err := s.Seen(context.Background(), p[0], p[1], TTL)
			if err != nil || !got {
				t.Errorf("Seen(%q, %q) = %v, %v; want true, nil", p[0], p[1], got, err)
			}
		}
	})
	t.Run("ConcurrentOneWinner", func(t *testing.T) {
		s := newStore(t)
		const n = 100
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			first int
			errs  []error
		)
		start := make(chan struct{})
		for range n {
			wg.Go(func() {
				<-start
				ok, err := s.Seen(context.Background(), "src", "evt_concurrent", TTL)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				if ok {
					first++
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("%d errors, first: %v", len(errs), errs[0])
		}
		if first != 1 {
			t.Errorf("%d of %d concurrent calls were first; want exactly 1", first, n)
		}
	})
	t.Run("CanceledContext", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if got, err := s.Seen(ctx, "src", "evt_1", TTL); err == nil {
			t.Errorf("Seen with a canceled context = %v, nil; want an error", got)
		}
	})
	t.Run("BadTTL", func(t *testing.T) {
		s := newStore(t)
		for _, ttl := range []time.Duration{0, -time.Second, time.Microsecond} {
			if got, err := s.Seen(context.Background(), "src", fmt.Sprint("evt_", ttl), ttl); err == nil {
				t.Errorf("Seen with ttl %v = %v, nil; want an error (every record must expire)", ttl, got)
			}
		}
	})
}

// ConcurrentDeliveries delivers one Standard Webhooks event n times at once through
// len(stores) Verifiers (one per replica, each on its own store value sharing one backend)
// and checks that exactly one delivery is accepted and every other one answers Duplicate.
func ConcurrentDeliveries(t *testing.T, stores []webhook.ReplayStore, n int) {
	t.Helper()
	now := time.Unix(1700000000, 0)
	src := webhook.Source{
		Name: "billing", Scheme: webhook.StandardWebhooks, Replay: true,
		Secrets: []string{"whsec_c2VjcmV0LUEtMDEyMzQ1Njc4OWFiY2RlZmdoaWo="},
	}
	var replicas []*webhook.Verifier
	for _, s := range stores {
		v, err := webhook.New(webhook.Config{Sources: []webhook.Source{src}, Replay: s, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, v)
	}
	body := []byte(`{"type":"invoice.paid"}`)
	h, err := webhook.Sign(src, "msg_concurrent", now, body)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[webhook.Reason]int{}
	)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r := replicas[i%len(replicas)].Verify(context.Background(), src.Name, webhook.Map(h), body)
			mu.Lock()
			counts[r.Reason]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	if counts[webhook.OK] != 1 || counts[webhook.Duplicate] != n-1 {
		t.Errorf("reasons of %d concurrent deliveries = %v; want 1 %v and %d %v", n, counts, webhook.OK, n-1, webhook.Duplicate)
	}
}
