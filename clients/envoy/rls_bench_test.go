package envoy_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/service"
)

// rlsBenchUsers is how many distinct descriptors the RLS benchmark sends round robin, as
// bench/ does.
const rlsBenchUsers = 1000

// rlsBench is an RLS adapter with cfg in front of Warden on the in-memory store (domain
// "bench", a per-user limit never reached), and rlsBenchUsers requests of one descriptor.
func rlsBench(tb testing.TB, cfg envoy.RateLimitConfig) (*envoy.RateLimitServer, []*rlsv3.RateLimitRequest) {
	tb.Helper()
	quiet := slog.New(slog.DiscardHandler)
	rl := &limiter.RateLimit{Name: "per_user", Unit: "second", RequestsPerUnit: 1 << 30}
	lim, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), Logger: quiet,
		Domains: []limiter.Domain{{Name: "bench", Descriptors: []limiter.Descriptor{{Key: "user", RateLimit: rl}}}}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Limiter: lim}})
	reqs := make([]*rlsv3.RateLimitRequest, rlsBenchUsers)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*commonrl.RateLimitDescriptor{
			{Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: fmt.Sprint("user-", i)}}}}}
	}
	return envoy.NewRateLimitServer(srv, cfg), reqs
}

// BenchmarkShouldRateLimit is the RLS path in process as Warden serves it: the adapter,
// CheckRateLimit on the in-memory store, and Codec's marshalling of the answer, as the gRPC
// server does after the handler returns (one descriptor, allowed).
func BenchmarkShouldRateLimit(b *testing.B) {
	s, reqs := rlsBench(b, envoy.RateLimitConfig{})
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		out, err := s.ShouldRateLimit(ctx, reqs[i%rlsBenchUsers])
		if err != nil || out.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			b.Fatalf("got %v, %v", out, err)
		}
		data, err := envoy.Codec{}.Marshal(out)
		if err != nil {
			b.Fatal(err)
		}
		data.Free()
		i++
	}
}
