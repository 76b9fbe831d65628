package limiter_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
)

// peerDomain is a domain as limiter/rlconfig reads envoyproxy/ratelimit files.
func peerDomain(ds ...limiter.Descriptor) limiter.Domain {
	return limiter.Domain{Name: "basic", PeerFormat: true, CountRefused: true, Descriptors: ds}
}

func peerCounts(ps *limiter.PeerStats) map[string]limiter.PeerCount {
	m := map[string]limiter.PeerCount{}
	for _, c := range ps.Counts() {
		m[c.Key] = c
	}
	return m
}

// The peer's arithmetic (src/limiter/base_limiter.go): a limit of 10 and NEAR_LIMIT_RATIO 0.8
// (near from the 9th hit), hits of several sizes.
func TestPeerStatsCounts(t *testing.T) {
	c := &clock{}
	c.at(0)
	ps := limiter.NewPeerStats(0, 0)
	l, _ := newLimiter(t, c, []limiter.Domain{peerDomain(
		limiter.Descriptor{Key: "key1", Value: "value1", RateLimit: rl(10, "minute")},
		limiter.Descriptor{Key: "shadow", ShadowMode: true, RateLimit: rl(1, "minute")},
		limiter.Descriptor{Key: "named", RateLimit: &limiter.RateLimit{Name: "my_limit", Unit: "hour", RequestsPerUnit: 1, Algorithm: limiter.FixedWindow}},
		limiter.Descriptor{Key: "free", RateLimit: &limiter.RateLimit{Unlimited: true}},
		limiter.Descriptor{Key: "ban", RateLimit: &limiter.RateLimit{Ban: true, Unit: "second", Algorithm: limiter.FixedWindow}},
	)}, func(cfg *limiter.Config) { cfg.PeerStats = ps })
	hit := func(cost int64, kvs ...string) {
		check(t, l, limiter.Request{Domain: "basic", Cost: cost, Descriptors: []limiter.RequestDescriptor{desc(kvs...)}})
	}
	hit(7, "key1", "value1") // 0 -> 7: within 7
	hit(3, "key1", "value1") // 7 -> 10: within 3, near 2 (9th and 10th)
	hit(3, "key1", "value1") // 10 -> 13: over 3
	hit(0, "key1", "value1") // a zero-cost check: nothing
	hit(1, "shadow", "a")    // within
	hit(2, "shadow", "a")    // 1 -> 3: over 2, shadow 2
	hit(1, "named", "x")     // named: counted under its path
	hit(1, "free", "x")      // unlimited: not counted
	hit(1, "ban", "x")       // requests_per_unit 0: over
	hit(1, "unknown", "x")   // no limit: nothing
	want := map[string]limiter.PeerCount{
		"basic.key1_value1": {Key: "basic.key1_value1", TotalHits: 13, WithinLimit: 10, NearLimit: 2, OverLimit: 3},
		"basic.shadow":      {Key: "basic.shadow", TotalHits: 3, WithinLimit: 1, NearLimit: 1, OverLimit: 2, ShadowMode: 2},
		"basic.named":       {Key: "basic.named", TotalHits: 1, WithinLimit: 1, NearLimit: 1}, // a limit of 1: near from 0
		"basic.ban":         {Key: "basic.ban", TotalHits: 1, OverLimit: 1},
	}
	got := peerCounts(ps)
	delete(got, "basic.free")
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("counts (-want +got):\n%s", d)
	}
	if c := peerCounts(ps)["basic.free"]; c.TotalHits != 0 {
		t.Errorf("unlimited counted: %+v", c)
	}
}

// Keys from request values only where the peer puts them: detailed_metric, value_to_metric,
// share_threshold (src/config/config_impl.go, GetLimit; its test/config/config_test.go).
func TestPeerStatsKeys(t *testing.T) {
	c := &clock{}
	c.at(0)
	ps := limiter.NewPeerStats(0, 3)
	l, _ := newLimiter(t, c, []limiter.Domain{peerDomain(
		limiter.Descriptor{Key: "plain", RateLimit: rl(100, "minute")},
		limiter.Descriptor{Key: "detailed", DetailedMetric: true, RateLimit: rl(100, "minute")},
		limiter.Descriptor{Key: "route", Value: "/api/*", ValueToMetric: true, Descriptors: []limiter.Descriptor{
			{Key: "method", RateLimit: rl(100, "minute")},
		}},
		limiter.Descriptor{Key: "wild", Value: "/w/*", RateLimit: rl(100, "minute")},
		limiter.Descriptor{Key: "files", Value: "f*", ShareThreshold: true, DetailedMetric: true, RateLimit: rl(100, "minute")},
		limiter.Descriptor{Key: "ip", Value: "10.0.0.1", RateLimit: rl(100, "minute")},
		limiter.Descriptor{Key: "cap", DetailedMetric: true, RateLimit: rl(100, "minute")},
	)}, func(cfg *limiter.Config) { cfg.PeerStats = ps })
	for _, kvs := range [][]string{
		{"plain", "a"}, {"plain", "b"},
		{"detailed", "a"}, {"detailed", "b:c"},
		{"route", "/api/v1", "method", "GET"},
		{"wild", "/w/x"},
		{"files", "f1"}, {"files", "f2"},
		{"ip", "10.0.0.1"},
		{"cap", "1"}, {"cap", "2"}, // past the cap of 3 dynamic keys: the configured key
	} {
		check(t, l, limiter.Request{Domain: "basic", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc(kvs...)}})
	}
	got := map[string]uint64{}
	for k, c := range peerCounts(ps) {
		if c.TotalHits > 0 {
			got[k] = c.TotalHits
		}
	}
	want := map[string]uint64{
		"basic.plain":                2,
		"basic.detailed_a":           1,
		"basic.detailed_b_c":         1,
		"basic.route_/api/v1.method": 1,
		"basic.wild_/w/*":            1,
		"basic.files_f*":             2,
		"basic.ip_10_0_0_1":          1,
		"basic.cap":                  2,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("keys (-want +got):\n%s", d)
	}
}

// Counting costs nothing per decision on a known key, dynamic keys included.
func TestPeerStatsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	c := &clock{}
	c.at(0)
	ps := limiter.NewPeerStats(0, 0)
	l, _ := newLimiter(t, c, []limiter.Domain{peerDomain(
		limiter.Descriptor{Key: "key1", Value: "value1", RateLimit: rl(1<<31, "hour")},
		limiter.Descriptor{Key: "detailed", DetailedMetric: true, RateLimit: rl(1<<31, "hour")},
	)}, func(cfg *limiter.Config) { cfg.PeerStats = ps })
	for _, d := range []limiter.RequestDescriptor{desc("key1", "value1"), desc("detailed", "v")} {
		req := limiter.Request{Domain: "basic", Cost: 1, Descriptors: []limiter.RequestDescriptor{d}}
		var res limiter.Result
		ctx := context.Background()
		_ = l.Check(ctx, req, &res)
		with := testing.AllocsPerRun(200, func() { _ = l.Check(ctx, req, &res) })
		if with != 0 && d.Entries[0].Key == "key1" {
			t.Errorf("%v: %v allocs per Check, want 0", d.Entries, with)
		}
		// The dynamic key's counter key is built per request by the store path anyway
		// (one string); counting must add nothing to it.
		l2, _ := newLimiter(t, c, []limiter.Domain{peerDomain(
			limiter.Descriptor{Key: "key1", Value: "value1", RateLimit: rl(1<<31, "hour")},
			limiter.Descriptor{Key: "detailed", DetailedMetric: true, RateLimit: rl(1<<31, "hour")},
		)})
		_ = l2.Check(ctx, req, &res)
		without := testing.AllocsPerRun(200, func() { _ = l2.Check(ctx, req, &res) })
		if with > without {
			t.Errorf("%v: %v allocs per Check with PeerStats, %v without", d.Entries, with, without)
		}
	}
}

func BenchmarkPeerStats(b *testing.B) {
	c := &clock{}
	c.at(0)
	for _, on := range []bool{false, true} {
		name := "off"
		var ps *limiter.PeerStats
		if on {
			name, ps = "on", limiter.NewPeerStats(0, 0)
		}
		b.Run(name, func(b *testing.B) {
			l, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{Now: c.now}), Now: c.now, PeerStats: ps, Domains: []limiter.Domain{peerDomain(
				limiter.Descriptor{Key: "key1", Value: "value1", RateLimit: rl(1<<31, "hour")})}})
			if err != nil {
				b.Fatal(err)
			}
			req := limiter.Request{Domain: "basic", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("key1", "value1")}}
			var res limiter.Result
			b.ReportAllocs()
			for b.Loop() {
				_ = l.Check(context.Background(), req, &res)
			}
		})
	}
}
