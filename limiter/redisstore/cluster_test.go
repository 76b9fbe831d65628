package redisstore_test

import (
	"context"
	"fmt"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/limitertest"
	"github.com/wardenhq/warden/limiter/redisstore"
)

func newClusterClient(t testing.TB, c *redistest.Cluster) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// tagsOnEveryNode returns, for each master of the cluster, a tag whose keys it owns.
func tagsOnEveryNode(t *testing.T, cc *redis.ClusterClient) map[string]string {
	t.Helper()
	byNode := map[string]string{}
	for i := 0; len(byNode) < 3 && i < 1000; i++ {
		tag := fmt.Sprintf("tenant-%d", i)
		// The node owning the hash tag owns every key of the tag.
		node, err := cc.MasterForKey(t.Context(), "{"+tag+"}")
		if err != nil {
			t.Fatal(err)
		}
		addr := node.Options().Addr
		if _, ok := byNode[addr]; !ok {
			byNode[addr] = tag
		}
	}
	if len(byNode) < 3 {
		t.Fatalf("found tags on %d nodes, want 3", len(byNode))
	}
	return byNode
}

// TestCluster runs the correctness tests on a real 3-master Redis Cluster with keys of
// different tags on different nodes: the conformance suite, exactly n admitted from 4 stores,
// multi-hit Takes (no CROSSSLOT), batches that span nodes, every key with a TTL, and NOSCRIPT
// recovery on each node.
func TestCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	cc := newClusterClient(t, cluster)
	tags := tagsOnEveryNode(t, cc)

	t.Run("conformance", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
			return newStore(t, cc, redisstore.Options{Now: now, Prefix: "conf:"})
		})
	})

	for _, m := range modes {
		t.Run(m.name+"/exactly n on every node", func(t *testing.T) {
			var stores []*redisstore.Store
			for range 4 {
				stores = append(stores, newStore(t, newClusterClient(t, cluster), redisstore.Options{Unbatched: m.unbatched}))
			}
			// The nodes in parallel, so that each pipeline holds keys of all three nodes and
			// go-redis must split it by node.
			t.Run("group", func(t *testing.T) {
				for node, tag := range tags {
					t.Run(node, func(t *testing.T) {
						t.Parallel()
						admitExactlyN(t, stores, tag, m.name+":", 40)
					})
				}
			})
		})
	}

	t.Run("multi-hit takes on every node", func(t *testing.T) {
		s := newStore(t, cc, redisstore.Options{})
		for _, tag := range tags {
			hits := []limiter.Hit{
				{Key: "burst", Limit: limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 2, Period: time.Hour}, Cost: 1},
				{Key: "window", Limit: limiter.Limit{Algorithm: limiter.SlidingWindow, Limit: 5, Period: time.Hour}, Cost: 1},
				{Key: "log", Limit: limiter.Limit{Algorithm: limiter.SlidingLog, Limit: 5, Period: time.Hour}, Cost: 1},
			}
			out := make([]limiter.Status, len(hits))
			var got []bool
			for range 3 {
				ok, err := s.Take(t.Context(), tag, hits, out)
				if err != nil {
					t.Fatalf("tag %s: %v", tag, err)
				}
				got = append(got, ok)
			}
			if diff := cmp.Diff(got, []bool{true, true, false}); diff != "" {
				t.Errorf("tag %s: allowed (-got +want):\n%s", tag, diff)
			}
		}
	})

	t.Run("slots and shards", func(t *testing.T) {
		// The store's slot of a key is Redis's, hash tags and their odd cases included.
		for _, k := range []string{"foo", "123456789", "{user1000}.following", "warden:rl:{tenant-7}:k", "{}", "{}{x}", "a{b}c{d}", "{a", "a}b{", "", "{\x00}\xff"} {
			want, err := cc.ClusterKeySlot(t.Context(), k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := redisstore.KeySlot(k); int64(got) != want {
				t.Errorf("KeySlot(%q) = %d, Redis says %d", k, got, want)
			}
		}
		// Shard names the master that owns a tag: tags of one master share it, tags of two
		// masters do not.
		s := newStore(t, cc, redisstore.Options{})
		if err := s.Load(t.Context()); err != nil {
			t.Fatal(err)
		}
		shards := map[int]string{}
		for node, tag := range tags {
			n := s.Shard(tag)
			if n <= 0 {
				t.Errorf("Shard(%q) = %d, want > 0", tag, n)
			}
			if other, ok := shards[n]; ok {
				t.Errorf("Shard(%q) = Shard of a tag on %s = %d", tag, other, n)
			}
			shards[n] = node
			for i := 0; i < 200; i++ {
				other := fmt.Sprint("t", i)
				m, err := cc.MasterForKey(t.Context(), "{"+other+"}")
				if err != nil {
					t.Fatal(err)
				}
				if same := m.Options().Addr == node; same != (s.Shard(other) == n) {
					t.Fatalf("tag %q on %s: Shard %d, tag %q on %s: Shard %d", other, m.Options().Addr, s.Shard(other), tag, node, n)
				}
			}
		}
	})

	t.Run("TTL and NOSCRIPT", func(t *testing.T) {
		s := newStore(t, cc, redisstore.Options{Prefix: "ttl:"})
		out := make([]limiter.Status, 1)
		run := func() {
			for _, tag := range tags {
				for _, l := range allLimits(3) {
					if _, err := s.Take(t.Context(), tag, []limiter.Hit{{Key: l.Name, Limit: l, Cost: 1}}, out); err != nil {
						t.Fatalf("Take: %v", err)
					}
				}
			}
		}
		run()
		if err := cc.ForEachMaster(t.Context(), func(ctx context.Context, n *redis.Client) error {
			return n.ScriptFlush(ctx).Err()
		}); err != nil {
			t.Fatal(err)
		}
		run()
		var keys atomic.Int64 // ForEachMaster runs the nodes concurrently
		err := cc.ForEachMaster(t.Context(), func(ctx context.Context, n *redis.Client) error {
			ks, err := n.Keys(ctx, "ttl:*").Result()
			if err != nil {
				return err
			}
			if len(ks) == 0 {
				return fmt.Errorf("node %s holds no keys", n.Options().Addr)
			}
			for _, k := range ks {
				keys.Add(1)
				if ttl := n.PTTL(ctx, k).Val(); ttl <= 0 {
					return fmt.Errorf("key %q: PTTL %v, want > 0", k, ttl)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := keys.Load(), int64(3*4); got != want {
			t.Errorf("%d keys, want %d", got, want)
		}
	})
}

// A Cluster store's slot-map refresher keeps a small stack: it ranged over the map's array of
// 16384 masters by value, a 128 KiB copy in its frame that made its goroutine's stack
// 256 KiB for the store's whole life (and the GC's heap goal counts stacks).
func TestClusterRefresherStackIsSmall(t *testing.T) {
	// Not parallel: the stacks measured are the process's.
	cluster := redistest.StartCluster(t)
	cc := newClusterClient(t, cluster)
	if err := cc.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	stacks := func() uint64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	before := stacks()
	newStore(t, cc, redisstore.Options{})
	// The refresher checks the slot map as soon as it starts.
	time.Sleep(200 * time.Millisecond)
	if grown, limit := int64(stacks())-int64(before), int64(192<<10); grown > limit {
		t.Errorf("stacks grew by %d KiB with a Cluster store, want at most %d KiB", grown>>10, limit>>10)
	}
}
