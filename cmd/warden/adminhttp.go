package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// adminHandler serves /healthz (the process is alive), /readyz (it should get traffic: gRPC
// SERVING and Redis, when configured, answering) and /metrics (Prometheus).
func (a *app) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		resp, err := a.health.Check(r.Context(), &healthpb.HealthCheckRequest{})
		switch {
		case err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			http.Error(w, "not serving", http.StatusServiceUnavailable)
		case a.redisHealth != nil && !a.redisHealth.Healthy():
			http.Error(w, "redis unavailable", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ready\n"))
		}
	})
	// Uncompressed: a gzip writer is 0.8 MiB of heap (client_golang pools it, but under load
	// the GC empties the pool between two scrapes, so every scrape allocated one), for a
	// page of a few dozen KiB that a scraper reads over a local network.
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.tel.reg, promhttp.HandlerOpts{DisableCompression: true}))
	if a.cfg.Server.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}
