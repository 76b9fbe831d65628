package redisauth_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/redisauth"
	"github.com/wardenhq/warden/internal/redistest"
)

// BenchmarkImportedKeysRedis imports WARDEN_IMPORT_KEYS (default 1,000,000) foreign-format
// keys into a real Redis through APIKeys.Import on 32 concurrent callers (reported once as
// import_s and redis_MB, Redis's used memory), then authenticates with them: cached keys, 0
// allocs/op (a fresh replica's first use of a key is a store read).
//
//	go test -run '^$' -bench ImportedKeysRedis -benchmem -benchtime 1000000x ./authn/redisauth/
func BenchmarkImportedKeysRedis(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("WARDEN_IMPORT_KEYS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	ctx := context.Background()
	srv := redistest.Start(b)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	b.Cleanup(func() { _ = c.Close() })
	store, err := redisauth.NewKeyStore(redisauth.Config{Client: c})
	if err != nil {
		b.Fatal(err)
	}
	pepper, _ := authn.NewPepper(bytes.Repeat([]byte{7}, 32))
	a, err := authn.NewAPIKeys(authn.APIKeysConfig{Store: store, Pepper: pepper, Env: authn.EnvLive,
		Environments: []authn.Environment{authn.EnvLive, authn.EnvTest},
		Imported:     []authn.ImportedFormat{{Prefix: "acme_live_", Env: authn.EnvLive}, {Prefix: "acme_test_", Env: authn.EnvTest}},
		CacheSize:    1 << 16, CacheTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%032x", []string{"acme_live_", "acme_test_"}[i%2], uint64(i)*0x9e3779b97f4a7c15)
	}
	start := time.Now()
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if _, err := a.Import(ctx, keys[i], authn.EnvUnspecified, authn.KeySpec{Owner: "user-" + strconv.Itoa(i), Tenant: "acme"}); err != nil {
					failed.Add(1)
				}
				if i%250_000 == 249_999 {
					fmt.Fprintf(os.Stderr, "imported %d keys into Redis in %v\n", i+1, time.Since(start).Round(time.Millisecond))
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d imports failed", failed.Load())
	}
	info, _ := c.InfoMap(ctx, "memory").Result()
	usedMB, _ := strconv.ParseFloat(info["Memory"]["used_memory"], 64)
	// The working set: 1<<16 keys, cached after their first use.
	set := keys[:min(n, 1<<16)]
	for _, k := range set {
		if _, r := a.Authenticate(ctx, k); r != authn.OK {
			b.Fatalf("authenticate: %v", r)
		}
	}
	if allocs := testing.AllocsPerRun(1000, func() { a.Authenticate(ctx, set[3]) }); allocs != 0 {
		b.Fatalf("Authenticate on a cached imported key allocs = %v, want 0", allocs)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, r := a.Authenticate(ctx, set[i&(len(set)-1)]); r != authn.OK {
			b.Fatal(r)
		}
	}
	b.ReportMetric(took.Seconds(), "import_s")
	b.ReportMetric(usedMB/(1<<20), "redis_MB")
}
