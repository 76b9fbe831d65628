package redisstore_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestMemoryPerKey measures Redis's used_memory per live counter key, for each algorithm but
// the sliding log, with the key names the Limiter gives (domain "bench", one descriptor
// entry, the limit suffix). It takes one key through the Store, then copies its value and TTL
// to WARDEN_REDIS_MEMKEYS keys of names of the same shape with a server-side loop (a Take per
// key would take minutes), and prints the growth of used_memory per key and MEMORY USAGE.
// Skipped unless WARDEN_REDIS_MEMKEYS is set:
//
//	WARDEN_REDIS_MEMKEYS=1000000 go test -run MemoryPerKey -v ./limiter/redisstore/
func TestMemoryPerKey(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WARDEN_REDIS_MEMKEYS"))
	if n <= 0 {
		t.Skip("set WARDEN_REDIS_MEMKEYS to the number of keys")
	}
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow} {
		t.Run(alg.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			srv := redistest.Start(t)
			client := newClient(t, srv.Addr())
			s := newStore(t, client, redisstore.Options{Prefix: "warden:rl:"})
			suffix := "|" + string("tsfl"[alg]) + "60000000"
			l := limiter.Limit{Algorithm: alg, Limit: 1000, Period: time.Minute}
			hits := []limiter.Hit{{Key: "bench|user=u0000000" + suffix, Limit: l, Cost: 1}}
			if _, err := s.Take(ctx, "bench", hits, make([]limiter.Status, 1)); err != nil {
				t.Fatal(err)
			}
			keys, err := client.Keys(ctx, "*").Result()
			if err != nil || len(keys) != 1 {
				t.Fatalf("keys %q, %v; want one", keys, err)
			}
			name := keys[0]
			val, err := client.Dump(ctx, name).Result()
			if err != nil {
				t.Fatal(err)
			}
			before := usedMemory(t, client)
			format := strings.Replace(name, "u0000000", "u%07d", 1)
			const fill = `for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('RESTORE', string.format(ARGV[3], i), 3600000, ARGV[4], 'REPLACE')
end
return 1`
			for i := 1; i <= n; i += 50000 {
				if err := client.Eval(ctx, fill, nil, i, min(n, i+49999), format, val).Err(); err != nil {
					t.Fatal(err)
				}
			}
			after := usedMemory(t, client)
			usage, _ := client.MemoryUsage(ctx, name).Result()
			enc, err := client.ObjectEncoding(ctx, name).Result()
			if err != nil {
				enc = err.Error()
			}
			t.Logf("%s: key %q (%d bytes, %s): %.1f B per key in used_memory over %d keys; MEMORY USAGE %d",
				alg, name, len(name), enc, float64(after-before)/float64(n), n, usage)
		})
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
