package redisstore_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestLoneTakeRedisTime takes lone Takes on Redis's TIME (Options.Now nil, ARGV[1] ""), each
// on take.lua's short path and, on a key of its own, on its general path
// (redisstore.GeneralPath), between two reads of TIME. Both must answer alike (the same
// decision and remaining; reset, retry and stored instant apart by at most the time between
// the reads, and between those of the first step), store the same count, and have decided at
// an instant between the reads.
func TestLoneTakeRedisTime(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	short := newStore(t, client, redisstore.Options{Unbatched: true})
	general := newStore(t, redisstore.GeneralPath(client), redisstore.Options{Unbatched: true})
	now := func() int64 {
		tm, err := client.Time(t.Context()).Result()
		if err != nil {
			t.Fatalf("TIME: %v", err)
		}
		return tm.UnixMicro()
	}
	// stored returns the value of key's counter as its two integers (see take.lua's header):
	// At and N for the token bucket, X (or W) and N for the fixed window.
	stored := func(s *redisstore.Store, key string) (int64, int64) {
		name := redisstore.Name(s, "lone", key)
		cut := len(name) - redisstore.FieldLen
		v, err := client.HGet(t.Context(), name[:cut], name[cut:]).Result()
		if err != nil {
			t.Fatalf("HGET %s: %v", key, err)
		}
		a, n, _ := strings.Cut(strings.TrimPrefix(v, "-"), ":")
		x, err := strconv.ParseInt(a, 10, 64)
		if err != nil {
			t.Fatalf("%s stored %q", key, v)
		}
		y, _ := strconv.ParseInt(n, 10, 64)
		return x, y
	}
	for _, l := range []limiter.Limit{
		{Name: "tb", Algorithm: limiter.TokenBucket, Limit: 5, Period: time.Hour},
		{Name: "fw", Algorithm: limiter.FixedWindow, Limit: 5, Period: 24 * time.Hour},
	} {
		t.Run(l.Name, func(t *testing.T) {
			P := l.Period.Microseconds()
			// d0 is the time between the reads around the first step: the two keys' states
			// are apart by as much.
			var d0 int64
			for step := range 7 { // 5 allowed, then refused
				before := now()
				got, want := make([]limiter.Status, 1), make([]limiter.Status, 1)
				for _, x := range []struct {
					s   *redisstore.Store
					key string
					out []limiter.Status
				}{{short, "short" + l.Name, got}, {general, "general" + l.Name, want}} {
					if _, err := x.s.Take(t.Context(), "lone", []limiter.Hit{{Key: x.key, Limit: l, Cost: 1}}, x.out); err != nil {
						t.Fatalf("step %d: Take: %v", step, err)
					}
				}
				after := now()
				if step == 0 {
					d0 = after - before
				}
				d := d0 + after - before
				g, w := got[0], want[0]
				if g.Allowed != w.Allowed || g.Remaining != w.Remaining || g.Allowed != (step < 5) {
					t.Fatalf("step %d: short path %+v, general path %+v", step, g, w)
				}
				if diff := (g.ResetAfter - w.ResetAfter).Abs(); diff > time.Duration(d)*time.Microsecond {
					t.Errorf("step %d: reset after %v on the short path, %v on the general one (%d µs apart)", step, g.ResetAfter, w.ResetAfter, d)
				}
				if diff := (g.RetryAfter - w.RetryAfter).Abs(); diff > time.Duration(d)*time.Microsecond {
					t.Errorf("step %d: retry after %v on the short path, %v on the general one (%d µs apart)", step, g.RetryAfter, w.RetryAfter, d)
				}
				if !g.Allowed {
					continue
				}
				sx, sn := stored(short, "short"+l.Name)
				gx, gn := stored(general, "general"+l.Name)
				if sn != gn || sx-gx > d || gx-sx > d {
					t.Errorf("step %d: stored %d:%d on the short path, %d:%d on the general one (%d µs apart)", step, sx, sn, gx, gn, d)
				}
				// The instant the short path decided at: At less the reset (rounded up) for the
				// token bucket; the window's end less the reset for the fixed window.
				at := sx - g.ResetAfter.Microseconds()
				if l.Algorithm == limiter.FixedWindow {
					at = sx - sx%P - g.ResetAfter.Microseconds()
				}
				if at < before-1 || at > after {
					t.Errorf("step %d: the short path decided at %d, TIME read %d then %d", step, at, before, after)
				}
			}
		})
	}
}
