package redisstore_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// BenchmarkTake measures Take under b.RunParallel against a throwaway Redis: one EVALSHA per
// Take from the caller's goroutine (unbatched) against the batcher, on one hot key and on
// 1000 keys. Run with -cpu to vary callers; ops/s is reported beside ns/op, and Redis's own
// share: redis-cpu-µs/op (the server process's CPU, from INFO cpu) and script-µs/op (the
// EVALSHA/EVAL time of INFO commandstats, per Take), and takes/script (Stats: Takes per
// script call).
//
//	go test -run '^$' -bench Take -benchtime=1s -cpu 2 ./limiter/redisstore/
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b)
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow} {
		// A million per second: never refused here, and (limit dividing the period in µs) the
		// token bucket stores one integer, as most configured rates do.
		l := limiter.Limit{Algorithm: alg, Limit: 1_000_000, Period: time.Second}
		for _, m := range modes {
			for _, nkeys := range []int{1, 1000} {
				b.Run(alg.String()+"/"+m.name+"/keys="+strconv.Itoa(nkeys), func(b *testing.B) {
					client := newClient(b, srv.Addr())
					s := newStore(b, client, redisstore.Options{Unbatched: m.unbatched})
					keys := make([]string, nkeys)
					for i := range keys {
						keys[i] = "bench:" + strconv.Itoa(i)
					}
					var next atomic.Int64
					b.SetParallelism(64) // many callers per CPU, as concurrent gRPC requests are
					b.ReportAllocs()
					before, st0 := redisCost(b, client), s.Stats()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						hits := []limiter.Hit{{Limit: l, Cost: 1}}
						out := make([]limiter.Status, 1)
						for pb.Next() {
							hits[0].Key = keys[int(next.Add(1))%nkeys]
							if _, err := s.Take(b.Context(), "bench", hits, out); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.StopTimer()
					after, st := redisCost(b, client), s.Stats()
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
					b.ReportMetric(float64(st.Takes-st0.Takes)/float64(max(st.Scripts-st0.Scripts, 1)), "takes/script")
					b.ReportMetric((after.cpu-before.cpu)/float64(b.N), "redis-cpu-µs/op")
					b.ReportMetric((after.script-before.script)/float64(b.N), "script-µs/op")
				})
			}
		}
	}
}

// cost is what Redis spent so far: its process's CPU and its scripts' time, in µs.
type cost struct{ cpu, script float64 }

func redisCost(b *testing.B, client *redis.Client) cost {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := client.Info(ctx, "cpu", "commandstats").Result()
	if err != nil {
		b.Fatalf("INFO: %v", err)
	}
	var c cost
	for line := range strings.SplitSeq(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_sys", "used_cpu_user":
			f, _ := strconv.ParseFloat(v, 64)
			c.cpu += f * 1e6
		case "cmdstat_evalsha", "cmdstat_eval":
			for field := range strings.SplitSeq(v, ",") {
				if us, ok := strings.CutPrefix(field, "usec="); ok {
					f, _ := strconv.ParseFloat(us, 64)
					c.script += f
				}
			}
		}
	}
	return c
}

// BenchmarkLimiterCheck measures limiter.Limiter.Check on this store (batched), with a caller
// deadline as a gRPC request has, over 1000 users of a token bucket: the Redis path of
// RLS and CheckRateLimit without the gRPC server.
//
//	go test -run '^$' -bench LimiterCheck -benchmem -cpu 2 ./limiter/redisstore/
func BenchmarkLimiterCheck(b *testing.B) {
	srv := redistest.Start(b)
	store := newStore(b, newClient(b, srv.Addr()), redisstore.Options{})
	l, err := limiter.New(limiter.Config{
		Store:              store,
		OverLimitCacheSize: -1,
		Domains: []limiter.Domain{{Name: "bench", Descriptors: []limiter.Descriptor{{
			Key:       "user",
			RateLimit: &limiter.RateLimit{RequestsPerUnit: 1_000_000, Period: time.Second, Algorithm: limiter.TokenBucket},
		}}}},
	})
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = "u" + strconv.Itoa(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	var next atomic.Int64
	b.SetParallelism(64)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := limiter.Request{Domain: "bench", Cost: 1, Descriptors: []limiter.RequestDescriptor{{Entries: []limiter.Entry{{Key: "user"}}}}}
		var res limiter.Result
		for pb.Next() {
			req.Descriptors[0].Entries[0].Value = users[int(next.Add(1))%len(users)]
			if err := l.Check(ctx, req, &res); err != nil || !res.Allowed {
				b.Errorf("Check: %v, allowed %v", err, res.Allowed)
				return
			}
		}
	})
}
