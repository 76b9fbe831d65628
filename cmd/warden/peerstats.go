package main

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/limiter"
)

// peerExport exports envoyproxy/ratelimit's stats (envoy.rls.peer_stats: true) on /metrics,
// named and labelled as the peer's Prometheus exporter names them (its
// src/stats/prom/default_mapper.yaml, the statsd_exporter mapping its README gives), so that
// dashboards and alerts built for the peer work unchanged:
//
//	ratelimit_service_rate_limit_{total_hits,over_limit,near_limit,within_limit,shadow_mode}{domain,key1[,key2]}
//	ratelimit_service_config_load_success, ratelimit_service_config_load_error
//	ratelimit_service_should_rate_limit_error{err_type="redis_error"}
//	ratelimit_service_total_requests{grpc_method="ShouldRateLimit"}
//	ratelimit_service_response_time_seconds{grpc_method="ShouldRateLimit"} (histogram)
//
// Counters keep their names: no "_total" is added (the OTel exporter adds it to Warden's own).
// The state is created once, when a config first turns the option on, and kept across reloads.
type peerExport struct {
	p atomic.Pointer[peerCollector]
}

type peerCollector struct {
	stats    *limiter.PeerStats
	requests prometheus.Counter
	latency  prometheus.Histogram
}

// forConfig returns the PeerStats to give the limiter built for cfg: nil unless
// envoy.rls.peer_stats is on. The first time, it registers the exporter on reg.
func (pe *peerExport) forConfig(cfg *config.File, reg prometheus.Registerer) *limiter.PeerStats {
	y, err := decodeEnvoy(cfg)
	if err != nil || !y.RLS.PeerStats {
		return nil // a decoding error is reported by buildEnvoy
	}
	if c := pe.p.Load(); c != nil {
		return c.stats
	}
	c := newPeerCollector(y.RLS.NearLimitRatio)
	reg.MustRegister(c)
	pe.p.Store(c)
	return c.stats
}

func newPeerCollector(nearLimitRatio float32) *peerCollector {
	method := prometheus.Labels{"grpc_method": "ShouldRateLimit"}
	return &peerCollector{
		stats: limiter.NewPeerStats(nearLimitRatio, 0),
		requests: prometheus.NewCounter(prometheus.CounterOpts{Name: "ratelimit_service_total_requests",
			Help: "ShouldRateLimit calls (envoyproxy/ratelimit's name).", ConstLabels: method}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ratelimit_service_response_time_seconds",
			Help: "ShouldRateLimit response time (envoyproxy/ratelimit's name).", ConstLabels: method,
			Buckets: prometheus.DefBuckets}),
	}
}

// configLoaded counts a reload (config_load_success or _error) once the option is on.
func (pe *peerExport) configLoaded(err error) {
	if c := pe.p.Load(); c != nil {
		c.stats.ConfigLoaded(err)
	}
}

// Describe sends nothing: the series depend on the configuration (an unchecked collector).
func (c *peerCollector) Describe(chan<- *prometheus.Desc) {}

var peerCounterNames = [...]string{"total_hits", "over_limit", "near_limit", "within_limit", "shadow_mode"}

func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	c.requests.Collect(ch)
	c.latency.Collect(ch)
	ok, bad, redisErr := c.stats.ServiceCounts()
	counter := func(name, help string, v uint64, labels prometheus.Labels) {
		if v > 0 { // the peer flushes a counter once it has counted something
			ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(name, help, nil, labels), prometheus.CounterValue, float64(v))
		}
	}
	counter("ratelimit_service_config_load_success", "Config loads (envoyproxy/ratelimit's name).", ok, nil)
	counter("ratelimit_service_config_load_error", "Config loads that failed (envoyproxy/ratelimit's name).", bad, nil)
	counter("ratelimit_service_should_rate_limit_error", "Decisions the store could not take (envoyproxy/ratelimit's name).",
		redisErr, prometheus.Labels{"err_type": "redis_error"})

	// Several keys can map to one series (the mapping keeps two key parts): summed, as the
	// statsd exporter sums what it maps to one series.
	type series struct {
		name, domain, key1, key2 string
		three                    bool
	}
	sums := map[series]uint64{}
	var order []series
	for _, pc := range c.stats.Counts() {
		domain, key1, key2, three, ok := peerLabels(pc.Key)
		if !ok {
			continue
		}
		for i, v := range [...]uint64{pc.TotalHits, pc.OverLimit, pc.NearLimit, pc.WithinLimit, pc.ShadowMode} {
			if v == 0 {
				continue
			}
			s := series{"ratelimit_service_rate_limit_" + peerCounterNames[i], domain, key1, key2, three}
			if _, seen := sums[s]; !seen {
				order = append(order, s)
			}
			sums[s] += v
		}
	}
	for _, s := range order {
		labels := prometheus.Labels{"domain": s.domain, "key1": s.key1}
		if s.three {
			labels["key2"] = s.key2
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(s.name, "envoyproxy/ratelimit's per-limit counter.", nil, labels),
			prometheus.CounterValue, float64(sums[s]))
	}
}

// peerLabels applies the peer's mapping to a stat key ("domain.part1.part2..."): two parts
// give {domain, key1}, three or more {domain, key1, key2} (the rest is dropped). A key of the
// domain alone has no mapping.
func peerLabels(key string) (domain, key1, key2 string, three, ok bool) {
	parts := strings.SplitN(key, ".", 4)
	switch len(parts) {
	case 2:
		return parts[0], parts[1], "", false, true
	case 3, 4:
		return parts[0], parts[1], parts[2], true, true
	}
	return "", "", "", false, false
}

// timedRLS is the RLS adapter with the peer's request counter and response time.
type timedRLS struct {
	*envoy.RateLimitServer
	pe *peerExport
}

func (t timedRLS) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	c := t.pe.p.Load()
	if c == nil {
		return t.RateLimitServer.ShouldRateLimit(ctx, req)
	}
	start := time.Now()
	resp, err := t.RateLimitServer.ShouldRateLimit(ctx, req)
	c.requests.Inc()
	c.latency.Observe(time.Since(start).Seconds())
	return resp, err
}
