package redisrevoke_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/wardenhq/warden/authn/jwtauth/redisrevoke"
	"github.com/wardenhq/warden/internal/redistest"
)

func TestStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	now := time.Now()
	s := redisrevoke.New(rdb, redisrevoke.Config{Prefix: "t:", Now: func() time.Time { return now }})
	ctx := context.Background()

	if err := s.Revoke(ctx, "live", now.Add(time.Hour)); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := s.Revoke(ctx, "dead", now.Add(-time.Second)); err != nil {
		t.Fatalf("Revoke of an expired token: %v", err)
	}
	for _, tc := range []struct {
		jti  string
		want bool
	}{{"live", true}, {"dead", false}, {"never", false}, {"LIVE", false}} {
		got, err := s.Revoked(ctx, tc.jti)
		if err != nil {
			t.Fatalf("Revoked(%q): %v", tc.jti, err)
		}
		if got != tc.want {
			t.Errorf("Revoked(%q): got %v, want %v", tc.jti, got, tc.want)
		}
	}
	// The key expires with the token: PXAT, absolute, in milliseconds.
	at, err := rdb.Do(ctx, "PEXPIRETIME", "t:live").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(time.Hour).UnixMilli(); at != want {
		t.Errorf("PEXPIRETIME: got %d, want %d", at, want)
	}
	if n, _ := rdb.Exists(ctx, "t:dead").Result(); n != 0 {
		t.Errorf("a revocation of an expired token was stored")
	}
}
