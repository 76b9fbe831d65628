package redisauth_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/redisauth"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testutil"
)

func newClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newStore(t *testing.T, c redis.UniversalClient) *redisauth.KeyStore {
	t.Helper()
	s, err := redisauth.NewKeyStore(redisauth.Config{Client: c, Prefix: "t:"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

func TestKeyStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newClient(t, redistest.Start(t)))
	recs := []authn.KeyRecord{
		{ID: "AAAAAAAAAAA1", Env: authn.EnvLive, Digest: authn.Digest{1, 2, 3}, Owner: "alice",
			Tenant: "acme", Roles: []string{"admin", "reader"}, Scopes: []string{}, Tier: "paid",
			Labels: map[string]string{"team": "x"}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
			RotatedFrom: "AAAAAAAAAAA0"},
		{ID: "AAAAAAAAAAA2", Env: authn.EnvTest, Owner: "alice", CreatedAt: t0},
		{ID: "AAAAAAAAAAA3", Env: authn.EnvLive, Owner: "bob", Tenant: "acme", CreatedAt: t0},
		{ID: "iAAAAAAAAAA4", Env: authn.EnvTest, Imported: true, Owner: "carol", CreatedAt: t0},
	}
	for _, r := range recs {
		if err := s.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range recs {
		got, err := s.Key(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("Key(%s) (-got +want):\n%s", want.ID, diff)
		}
	}
	if _, err := s.Key(ctx, "nobody000000"); !errors.Is(err, authn.ErrKeyNotFound) {
		t.Errorf("Key(unknown) error = %v, want ErrKeyNotFound", err)
	}
	if err := s.Revoke(ctx, "AAAAAAAAAAA1", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Touch(ctx, "AAAAAAAAAAA1", t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Key(ctx, "AAAAAAAAAAA1")
	if !got.RevokedAt.Equal(t0.Add(time.Minute)) || !got.LastUsedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("after Revoke and Touch: revoked %v, last used %v", got.RevokedAt, got.LastUsedAt)
	}
	if err := s.Revoke(ctx, "nobody000000", t0); !errors.Is(err, authn.ErrKeyNotFound) {
		t.Errorf("Revoke(unknown) error = %v, want ErrKeyNotFound", err)
	}
	if err := s.Touch(ctx, "nobody000000", t0); err != nil {
		t.Errorf("Touch(unknown) error = %v, want nil", err)
	}
	if n, _ := s.Key(ctx, "nobody000000"); n.ID != "" {
		t.Errorf("Touch(unknown) created a record")
	}

	ids := func(rs []authn.KeyRecord, err error) map[string]bool {
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, r := range rs {
			m[r.ID] = true
		}
		return m
	}
	if diff := cmp.Diff(ids(s.List(ctx, authn.KeyFilter{Owner: "alice"})), map[string]bool{"AAAAAAAAAAA1": true, "AAAAAAAAAAA2": true}); diff != "" {
		t.Errorf("List(owner alice) (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(ids(s.List(ctx, authn.KeyFilter{Owner: "alice", Tenant: "acme"})), map[string]bool{"AAAAAAAAAAA1": true}); diff != "" {
		t.Errorf("List(alice, acme) (-got +want):\n%s", diff)
	}
	// Re-owning a key leaves a stale index entry, which List must not return.
	moved := recs[2]
	moved.Owner = "carol"
	_ = s.Put(ctx, moved)
	if diff := cmp.Diff(ids(s.List(ctx, authn.KeyFilter{Owner: "bob"})), map[string]bool{}); diff != "" {
		t.Errorf("List(owner bob) after re-owning (-got +want):\n%s", diff)
	}
	if _, err := s.List(ctx, authn.KeyFilter{}); !errors.Is(err, authn.ErrEmptyFilter) {
		t.Errorf("List(empty filter) error = %v, want ErrEmptyFilter", err)
	}
}

type replica struct {
	keys *authn.APIKeys
	seen *countingTarget // what the replica's subscriber applied
}

// countingTarget passes invalidations on to the replica's cache and counts them, so a test
// can wait until an announcement has been applied before it relies on the cache.
type countingTarget struct {
	next                   redisauth.Invalidator
	flushes, invalidations atomic.Int64
}

func (c *countingTarget) InvalidateKey(id string) { c.next.InvalidateKey(id); c.invalidations.Add(1) }
func (c *countingTarget) FlushKeys()              { c.next.FlushKeys(); c.flushes.Add(1) }

// waitApplied waits until the replica's subscriber has applied at least n invalidations.
func (r replica) waitApplied(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.seen.invalidations.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("subscriber applied %d invalidations, want %d", r.seen.invalidations.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func startReplica(t *testing.T, ctx context.Context, srv *redistest.Server, pepper *authn.Pepper) replica {
	t.Helper()
	c := newClient(t, srv)
	keys, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: newStore(t, c), Pepper: pepper,
		Env: authn.EnvLive, Environments: []authn.Environment{authn.EnvLive, authn.EnvTest},
		Imported: []authn.ImportedFormat{{Prefix: "acme_test_", Env: authn.EnvTest}},
		CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	seen := &countingTarget{next: keys}
	sub, err := redisauth.NewSubscriber(redisauth.SubscriberConfig{
		Redis: redisauth.Config{Client: c, Prefix: "t:"}, Target: seen, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("Subscriber.Run = %v, want nil", err)
		}
	})
	return replica{keys: keys, seen: seen}
}

// waitSubscribers waits until n clients listen on the invalidation channel.
func waitSubscribers(t *testing.T, c *redis.Client, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := c.PubSubNumSub(context.Background(), "warden:apikey:invalidate").Result()
		if err == nil && m["warden:apikey:invalidate"] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscribers: %v %v, want %d", m, err, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRevocationReachesOtherReplicaWithinOneSecond(t *testing.T) {
	for _, imported := range []bool{false, true} {
		t.Run(map[bool]string{false: "native", true: "imported"}[imported], func(t *testing.T) {
			testRevocationReachesOtherReplica(t, imported)
		})
	}
}

func testRevocationReachesOtherReplica(t *testing.T, imported bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel() // before the replicas' cleanups, which wait for Run
	srv := redistest.Start(t)
	pepper, _ := authn.NewPepper(bytes.Repeat([]byte{7}, 32))
	a := startReplica(t, ctx, srv, pepper)
	b := startReplica(t, ctx, srv, pepper)
	waitSubscribers(t, newClient(t, srv), 2)

	var (
		key string
		rec authn.KeyRecord
		err error
	)
	if imported {
		key = "acme_test_0123456789abcdefghijklmnopqrstuv"
		rec, err = a.keys.Import(ctx, key, authn.EnvUnspecified, authn.KeySpec{Owner: "alice", Tenant: "acme"})
	} else {
		key, rec, err = a.keys.Create(ctx, authn.KeySpec{Owner: "alice", Tenant: "acme"})
	}
	if err != nil {
		t.Fatal(err)
	}
	// Storing the key announces its id; B applies that asynchronously, and an announcement
	// applied after B cached the key would evict it and make the lookup count below racy.
	b.waitApplied(t, 1)
	for i := 0; i < 2; i++ {
		if p, r := b.keys.Authenticate(ctx, key); r != authn.OK || p.Subject != "alice" {
			t.Fatalf("replica B before revocation: %v %+v, want OK for alice", r, p)
		}
	}
	if got, want := b.keys.Stats().Lookups, uint64(1); got != want {
		t.Fatalf("replica B store lookups = %d, want %d (second use cached)", got, want)
	}

	if err := a.keys.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	for {
		_, r := b.keys.Authenticate(ctx, key)
		if r == authn.Revoked {
			break
		}
		if time.Since(revoked) > time.Second {
			t.Fatalf("replica B still answers %v %v after the revocation on A, want %v within 1s", r, time.Since(revoked), authn.Revoked)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, r := a.keys.Authenticate(ctx, key); r != authn.Revoked {
		t.Errorf("replica A after its own revocation: %v, want %v", r, authn.Revoked)
	}
}

type countingInvalidator struct{ flushes, invalidations atomic.Int64 }

func (c *countingInvalidator) InvalidateKey(string) { c.invalidations.Add(1) }
func (c *countingInvalidator) FlushKeys()           { c.flushes.Add(1) }

func TestSubscriberFlushesOnReconnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	srv := redistest.Start(t)
	c := newClient(t, srv)
	inv := &countingInvalidator{}
	sub, err := redisauth.NewSubscriber(redisauth.SubscriberConfig{Redis: redisauth.Config{Client: c},
		Target: inv, RetryDelay: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	waitSubscribers(t, c, 1)
	before := inv.flushes.Load()

	srv.Stop()
	srv.Restart()
	waitSubscribers(t, c, 1)
	if got := inv.flushes.Load(); got <= before {
		t.Errorf("flushes after reconnect = %d, want more than %d", got, before)
	}
	s := newStore(t, c)
	_ = s.Put(ctx, authn.KeyRecord{ID: "AAAAAAAAAAA1", Env: authn.EnvLive})
	if !testutil.Poll(5*time.Second, func() bool { return inv.invalidations.Load() > 0 }) {
		t.Errorf("no invalidation received after reconnect")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}
