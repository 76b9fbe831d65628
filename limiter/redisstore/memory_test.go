package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestMemoryPerKey measures Redis's used_memory per live counter, for each algorithm but the
// sliding log, with the key names the Limiter gives (domain "bench", one descriptor entry, the
// limit suffix): it takes each of WARDEN_REDIS_MEMKEYS counters once through the Store (64
// callers, batched, as a Warden under load does), and prints the growth of used_memory per
// counter, the hashes and how many of them Redis keeps as listpacks. WARDEN_REDIS_MEMKEYS is a
// comma-separated list of counts, each measured on a fresh server. Skipped unless it is set:
//
//	WARDEN_REDIS_MEMKEYS=10000,100000,1000000 go test -run MemoryPerKey -v ./limiter/redisstore/
func TestMemoryPerKey(t *testing.T) {
	var counts []int
	for f := range strings.SplitSeq(os.Getenv("WARDEN_REDIS_MEMKEYS"), ",") {
		if n, _ := strconv.Atoi(f); n > 0 {
			counts = append(counts, n)
		}
	}
	if len(counts) == 0 {
		t.Skip("set WARDEN_REDIS_MEMKEYS to the numbers of counters")
	}
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow} {
		for _, n := range counts {
			t.Run(fmt.Sprintf("%s/%d", alg, n), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				srv := redistest.Start(t)
				client := newClient(t, srv.Addr())
				s := newStore(t, client, redisstore.Options{Prefix: "warden:rl:"})
				suffix := "|" + string("tsfl"[alg]) + "60000000"
				// 10 a day: every counter lives for hours (a fixed window to midnight UTC).
				l := limiter.Limit{Algorithm: alg, Limit: 10, Period: 24 * time.Hour}
				take := func(i int) error {
					hits := []limiter.Hit{{Key: fmt.Sprintf("bench|user=u%07d%s", i, suffix), Limit: l, Cost: 1}}
					_, err := s.Take(ctx, "bench", hits, make([]limiter.Status, 1))
					return err
				}
				if err := take(n); err != nil { // loads the script before the first reading
					t.Fatal(err)
				}
				before := usedMemory(t, client)
				var next atomic.Int64
				var wg sync.WaitGroup
				errs := make(chan error, 64)
				for range 64 {
					wg.Go(func() {
						for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
							if err := take(i); err != nil {
								errs <- err
								return
							}
						}
					})
				}
				wg.Wait()
				close(errs)
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
				after := usedMemory(t, client)
				keys, listpacks := 0, 0
				iter := client.Scan(ctx, 0, "*", 1000).Iterator()
				for iter.Next(ctx) {
					keys++
					if enc, _ := client.ObjectEncoding(ctx, iter.Val()).Result(); enc == "listpack" {
						listpacks++
					}
				}
				if err := iter.Err(); err != nil {
					t.Fatal(err)
				}
				if live := storedCounters(t, client, "*"); live != n+1 {
					t.Fatalf("%d counters stored, want %d: some expired or were lost", live, n+1)
				}
				t.Logf("%s: %d live counters: %.1f B per counter in used_memory; %d keys (%.1f counters each), %d listpacks",
					alg, n+1, float64(after-before)/float64(n), keys, float64(n+1)/float64(keys), listpacks)
			})
		}
	}
}

func usedMemory(t *testing.T, client *redis.Client) int64 {
	t.Helper()
	info, err := client.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal(fmt.Errorf("no used_memory in INFO"))
	return 0
}
