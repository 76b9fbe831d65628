package memstore

import (
	"bufio"
	"context"
	"flag"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/limiter"
)

var (
	memKeys = flag.Int("memkeys", 0, "TestMemoryPerKey: live keys to insert (0 skips the test)")
	memAlg  = flag.String("memalg", "token_bucket", "TestMemoryPerKey: algorithm of every key")
)

// TestMemoryPerKey measures what the store costs per live key, in resident memory: run it
// alone, in a fresh process, for the figures to mean anything:
//
//	go test -run TestMemoryPerKey -count=1 -v ./limiter/memstore/ -memkeys 1000000
//
// It inserts -memkeys keys shaped like the limiter's ("domain|user=user-123456", tag
// "domain"), each key a string allocated for its request as the limiter does, one Take each,
// and reports VmRSS before and after (after a GC and a return of freed memory to the OS: the
// steady RSS), the peak (VmHWM) while growing, and the GC's CPU while growing and for one
// forced cycle with every key live.
func TestMemoryPerKey(t *testing.T) {
	n := *memKeys
	if n <= 0 {
		t.Skip("set -memkeys N to measure")
	}
	alg := -1
	for i, a := range algorithms {
		if a.String() == *memAlg {
			alg = i
		}
	}
	if alg < 0 {
		t.Fatalf("-memalg %q: unknown algorithm", *memAlg)
	}
	runtime.GC()
	debug.FreeOSMemory()
	rss0, _ := procStatus(t)
	gc0 := gcCPU()

	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	hits := []limiter.Hit{{Limit: limiter.Limit{Algorithm: algorithms[alg], Limit: 100, Period: time.Hour}, Cost: 1}}
	out := make([]limiter.Status, 1)
	buf := []byte("domain|user=user-")
	start := time.Now()
	for i := range n {
		hits[0].Key = string(strconv.AppendInt(buf, int64(i), 10))
		if ok, err := s.Take(ctx, "domain", hits, out); err != nil || !ok {
			t.Fatalf("Take %d: got %v, %v; want allowed", i, ok, err)
		}
	}
	grow := time.Since(start)
	gc1 := gcCPU()
	rssGrown, _ := procStatus(t)
	runtime.GC()
	debug.FreeOSMemory()
	rss1, hwm := procStatus(t)
	start = time.Now()
	runtime.GC()
	cycle := time.Since(start)
	if got := s.Len(); got != n {
		t.Fatalf("Len: got %d, want %d", got, n)
	}
	const mib = 1 << 20
	t.Logf("%s, %d keys: RSS %.1f -> %.1f MiB (%.1f right after growing), peak (VmHWM) %.1f MiB = %.2fx the steady RSS",
		*memAlg, n, float64(rss0)/mib, float64(rss1)/mib, float64(rssGrown)/mib, float64(hwm)/mib, float64(hwm)/float64(rss1))
	t.Logf("%.1f B per live key; growth %v (%.0f ns/insert), GC CPU while growing %.2f s, one forced GC with every key live %v",
		float64(rss1-rss0)/float64(n), grow.Round(time.Millisecond), float64(grow.Nanoseconds())/float64(n), gc1-gc0, cycle.Round(time.Microsecond))
	runtime.KeepAlive(s)
}

// procStatus returns this process's VmRSS and VmHWM in bytes.
func procStatus(t *testing.T) (rss, hwm int64) {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// gcCPU is the GC's CPU time so far, in seconds (an estimate the runtime keeps).
func gcCPU() float64 {
	m := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(m)
	return m[0].Value.Float64()
}

// BenchmarkNewKeys inserts b.N new keys and reports the live heap per key (after a GC) and the
// allocations per insert. The heap is the Go heap only: RSS is TestMemoryPerKey's.
func BenchmarkNewKeys(b *testing.B) {
	for _, alg := range algorithms {
		b.Run(alg.String(), func(b *testing.B) {
			now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			runtime.GC()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			s := New(Options{Now: func() time.Time { return now }})
			ctx := context.Background()
			hits := []limiter.Hit{{Limit: limiter.Limit{Algorithm: alg, Limit: 100, Period: time.Hour}, Cost: 1}}
			out := make([]limiter.Status, 1)
			b.ReportAllocs()
			b.ResetTimer()
			buf := []byte("domain|user=user-")
			for i := range b.N {
				// One allocation per insert is this key string, made per request as the
				// limiter does: a store that keeps it pays for it in heapB/key.
				hits[0].Key = string(strconv.AppendInt(buf, int64(i), 10))
				if _, err := s.Take(ctx, "domain", hits, out); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&m1)
			b.ReportMetric(float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/float64(b.N), "heapB/key")
			runtime.KeepAlive(s)
		})
	}
}
