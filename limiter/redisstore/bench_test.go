package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// BenchmarkTake measures Take under b.RunParallel against a throwaway Redis: one EVALSHA per
// Take from the caller's goroutine (unbatched) against the batcher, on one hot key and on
// 1000 keys (one per hash), and on 1000 keys in 16 hashes (about 62 per hash, as a million
// live counters in the default 16,384 hashes). Run with -cpu to vary callers; ops/s is
// reported beside ns/op, and Redis's own
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
			for _, c := range []struct{ nkeys, hashes int }{{1, 0}, {1000, 0}, {1000, 16}} {
				nkeys := c.nkeys
				name := alg.String() + "/" + m.name + "/keys=" + strconv.Itoa(nkeys)
				if c.hashes > 0 {
					name += "/hashes=" + strconv.Itoa(c.hashes)
				}
				b.Run(name, func(b *testing.B) {
					client := newClient(b, srv.Addr())
					s := newStore(b, client, redisstore.Options{Unbatched: m.unbatched, Hashes: c.hashes})
					keys := make([]string, nkeys)
					for i := range keys {
						keys[i] = "bench:" + strconv.Itoa(i)
					}
					for _, k := range keys { // every counter live before the measurement
						hits := []limiter.Hit{{Key: k, Limit: l, Cost: 1}}
						if _, err := s.Take(b.Context(), "bench", hits, make([]limiter.Status, 1)); err != nil {
							b.Fatal(err)
						}
					}
					var next atomic.Int64
					measureTakes(b, client, s, l, func(*rand.Rand) string { return keys[int(next.Add(1))%nkeys] })
				})
			}
		}
	}
}

// BenchmarkTakeSerial measures one Take at a time, by one caller, on 1000 keys: each Take is
// its script call's only one, the call of most Takes at low and medium load (for a token
// bucket or a fixed window, take.lua's short path). Redis's share is reported as
// BenchmarkTake's.
//
//	go test -run '^$' -bench TakeSerial -benchmem -cpu 1 ./limiter/redisstore/
func BenchmarkTakeSerial(b *testing.B) {
	srv := redistest.Start(b)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "serial:" + strconv.Itoa(i)
	}
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow} {
		l := limiter.Limit{Algorithm: alg, Limit: 1_000_000, Period: time.Second}
		for _, m := range modes {
			b.Run(alg.String()+"/"+m.name, func(b *testing.B) {
				client := newClient(b, srv.Addr())
				s := newStore(b, client, redisstore.Options{Unbatched: m.unbatched})
				hits := []limiter.Hit{{Limit: l, Cost: 1}}
				out := make([]limiter.Status, 1)
				for _, k := range keys { // every counter live before the measurement
					hits[0].Key = k
					if _, err := s.Take(b.Context(), "bench", hits, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				before, n := redisCost(b, client), 0
				for b.Loop() {
					hits[0].Key = keys[n%len(keys)]
					n++
					if _, err := s.Take(b.Context(), "bench", hits, out); err != nil {
						b.Fatal(err)
					}
				}
				reportCost(b, before, redisCost(b, client), n)
			})
		}
	}
}

// BenchmarkTakeLive measures Take (batched, 64 callers per CPU) on counters picked at random
// among WARDEN_BENCH_LIVE live ones (default 100,000), all taken once before the measurement:
// Redis's cost per Take where its memory per counter matters. Reported as BenchmarkTake's.
//
//	WARDEN_BENCH_LIVE=1000000 go test -run '^$' -bench TakeLive -benchtime 3s -cpu 2 ./limiter/redisstore/
func BenchmarkTakeLive(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("WARDEN_BENCH_LIVE")); err == nil && v > 0 {
		n = v
	}
	srv := redistest.Start(b)
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.FixedWindow, limiter.SlidingWindow} {
		b.Run(fmt.Sprintf("%s/live=%d", alg, n), func(b *testing.B) {
			client := newClient(b, srv.Addr())
			if err := client.FlushAll(b.Context()).Err(); err != nil {
				b.Fatal(err)
			}
			s := newStore(b, client, redisstore.Options{})
			// A million in 1000 days: never refused here, and every counter lives through the
			// run (a token bucket's for 86 s per unit taken).
			l := limiter.Limit{Algorithm: alg, Limit: 1_000_000, Period: 1000 * 24 * time.Hour}
			key := func(i int) string { return "bench|user=u" + strconv.Itoa(i) + "|x86400000000" }
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Go(func() {
					hits := []limiter.Hit{{Limit: l, Cost: 1}}
					out := make([]limiter.Status, 1)
					for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
						hits[0].Key = key(i)
						if _, err := s.Take(b.Context(), "bench", hits, out); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			measureTakes(b, client, s, l, func(r *rand.Rand) string { return key(r.IntN(n)) })
		})
	}
}

// measureTakes runs b.N Takes of cost 1 of l on s, from 64 callers per CPU, each on the key
// that key gives (r: the caller's own source), and reports the Takes per second and Redis's
// cost per Take: Takes per script call, Redis's CPU, its scripts' time.
func measureTakes(b *testing.B, client *redis.Client, s *redisstore.Store, l limiter.Limit, key func(r *rand.Rand) string) {
	b.SetParallelism(64) // many callers per CPU, as concurrent gRPC requests are
	b.ReportAllocs()
	before, st0 := redisCost(b, client), s.Stats()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		hits := []limiter.Hit{{Limit: l, Cost: 1}}
		out := make([]limiter.Status, 1)
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			hits[0].Key = key(r)
			if _, err := s.Take(b.Context(), "bench", hits, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	after, st := redisCost(b, client), s.Stats()
	b.ReportMetric(float64(st.Takes-st0.Takes)/float64(max(st.Scripts-st0.Scripts, 1)), "takes/script")
	reportCost(b, before, after, b.N)
}

// reportCost reports Redis's cost per Take from before to after, over n Takes.
func reportCost(b *testing.B, before, after cost, n int) {
	b.ReportMetric((after.cpu-before.cpu)/float64(n), "redis-cpu-µs/op")
	b.ReportMetric((after.script-before.script)/float64(n), "script-µs/op")
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
