package redisstore_test

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// BenchmarkTake measures Take under b.RunParallel against a throwaway Redis: one EVALSHA per
// Take from the caller's goroutine (unbatched) against the batcher, on one hot key and on
// 1000 keys. Run with -cpu to vary callers; ops/s is reported beside ns/op.
//
//	go test -run '^$' -bench Take -benchtime=1s -cpu 2 ./limiter/redisstore/
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b)
	l := limiter.Limit{Algorithm: limiter.TokenBucket, Limit: 1 << 30, Period: time.Second}
	for _, m := range modes {
		for _, nkeys := range []int{1, 1000} {
			b.Run(m.name+"/keys="+strconv.Itoa(nkeys), func(b *testing.B) {
				s := newStore(b, newClient(b, srv.Addr()), redisstore.Options{Unbatched: m.unbatched})
				keys := make([]string, nkeys)
				for i := range keys {
					keys[i] = "bench:" + strconv.Itoa(i)
				}
				var next atomic.Int64
				b.SetParallelism(64) // many callers per CPU, as concurrent gRPC requests are
				b.ReportAllocs()
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
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
		}
	}
}
