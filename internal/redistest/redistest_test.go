package redistest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
)

func TestServerStopRestart(t *testing.T) {
	s := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	s.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping after Stop: got nil error, want a connection error")
	}
	s.Restart()
	if got, err := c.Get(ctx, "k").Result(); err != redis.Nil {
		t.Fatalf("get after restart: got %q, %v; want redis.Nil (empty data set)", got, err)
	}
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	// Keys spread over all three masters; the cluster client routes each one.
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := c.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("set %s: %v", k, err)
		}
	}
	// Keys in different slots in one multi-key command are refused: the cluster is real.
	if err := c.Do(ctx, "MSET", "a", "1", "b", "2").Err(); err == nil {
		t.Fatal("MSET across slots: got nil error, want CROSSSLOT")
	}
}
