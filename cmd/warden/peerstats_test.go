package main

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
)

// The peer's mapping of stat keys to series: two key parts, or three and the rest dropped,
// keys that meet summed (src/stats/prom/prometheus_sink_test.go:45-83,
// TestFlushCounterWithDifferentLabels), and its service counters.
func TestPeerStatsMapping(t *testing.T) {
	c := newPeerCollector(0)
	ban := func(kv ...string) limiter.Descriptor {
		// A descriptor path ending in a requests_per_unit 0 limit: every hit is over.
		var root limiter.Descriptor
		n := &root
		for i := 0; i+1 < len(kv); i += 2 {
			if i > 0 {
				n.Descriptors = []limiter.Descriptor{{}}
				n = &n.Descriptors[0]
			}
			n.Key, n.Value = kv[i], kv[i+1]
		}
		n.RateLimit = &limiter.RateLimit{Ban: true, Unit: "minute", Algorithm: limiter.FixedWindow}
		return root
	}
	l, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), PeerStats: c.stats, Domains: []limiter.Domain{{
		Name: "domain1", PeerFormat: true, CountRefused: true, Descriptors: []limiter.Descriptor{
			ban("key1", "val1"), ban("key3", "val3", "key4", "val4"),
		}}, {
		Name: "domain2", PeerFormat: true, CountRefused: true, Descriptors: []limiter.Descriptor{
			ban("key1", "val1", "key2", "val2"), ban("key3", "val3", "key4", "val4", "key5", "val5"),
		}}, {
		// Keys that meet after the mapping are summed (the peer's third series: 1 + 2).
		Name: "domain3", PeerFormat: true, CountRefused: true, Descriptors: []limiter.Descriptor{{
			Key: "key3", Value: "val3", Descriptors: []limiter.Descriptor{{
				Key: "key4", Value: "val4", RateLimit: ban("x", "y").RateLimit,
				Descriptors: []limiter.Descriptor{ban("key5", "val5")},
			}},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hit := func(domain string, cost int64, kv ...string) {
		var rd limiter.RequestDescriptor
		for i := 0; i+1 < len(kv); i += 2 {
			rd.Entries = append(rd.Entries, limiter.Entry{Key: kv[i], Value: kv[i+1]})
		}
		var res limiter.Result
		if err := l.Check(context.Background(), limiter.Request{Domain: domain, Cost: cost, Descriptors: []limiter.RequestDescriptor{rd}}, &res); err != nil {
			t.Fatal(err)
		}
	}
	hit("domain1", 1, "key1", "val1")
	hit("domain1", 1, "key3", "val3", "key4", "val4")
	hit("domain2", 2, "key1", "val1", "key2", "val2")
	hit("domain2", 2, "key3", "val3", "key4", "val4", "key5", "val5")
	hit("domain3", 1, "key3", "val3", "key4", "val4")
	hit("domain3", 2, "key3", "val3", "key4", "val4", "key5", "val5")
	c.stats.ConfigLoaded(nil)
	c.stats.ConfigLoaded(errors.New("bad file"))

	want := []string{
		`ratelimit_service_config_load_error 1`,
		`ratelimit_service_config_load_success 1`,
		`ratelimit_service_rate_limit_over_limit{domain="domain1",key1="key1_val1"} 1`,
		`ratelimit_service_rate_limit_over_limit{domain="domain1",key1="key3_val3",key2="key4_val4"} 1`,
		`ratelimit_service_rate_limit_over_limit{domain="domain2",key1="key1_val1",key2="key2_val2"} 2`,
		`ratelimit_service_rate_limit_over_limit{domain="domain2",key1="key3_val3",key2="key4_val4"} 2`,
		`ratelimit_service_rate_limit_over_limit{domain="domain3",key1="key3_val3",key2="key4_val4"} 3`,
		`ratelimit_service_rate_limit_total_hits{domain="domain1",key1="key1_val1"} 1`,
		`ratelimit_service_rate_limit_total_hits{domain="domain1",key1="key3_val3",key2="key4_val4"} 1`,
		`ratelimit_service_rate_limit_total_hits{domain="domain2",key1="key1_val1",key2="key2_val2"} 2`,
		`ratelimit_service_rate_limit_total_hits{domain="domain2",key1="key3_val3",key2="key4_val4"} 2`,
		`ratelimit_service_rate_limit_total_hits{domain="domain3",key1="key3_val3",key2="key4_val4"} 3`,
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, gerr := reg.Gather()
	if gerr != nil {
		t.Fatal(gerr)
	}
	var got []string
	for _, mf := range mfs {
		if mf.GetType() != dto.MetricType_COUNTER || !strings.HasPrefix(mf.GetName(), "ratelimit_service_") || mf.GetName() == "ratelimit_service_total_requests" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, lp := range m.GetLabel() {
				labels = append(labels, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			line := mf.GetName()
			if len(labels) > 0 {
				line += "{" + strings.Join(labels, ",") + "}"
			}
			got = append(got, line+" "+strconv.FormatFloat(m.GetCounter().GetValue(), 'f', -1, 64))
		}
	}
	sort.Strings(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("series (-want +got):\n%s", d)
	}
}
