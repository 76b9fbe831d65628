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

// decideRLS is one RLS decision as Warden serves it: ShouldRateLimit, then Codec's
// marshalling of the answer, as the gRPC server does after the handler returns.
func decideRLS(tb testing.TB, s *envoy.RateLimitServer, r *rlsv3.RateLimitRequest) {
	out, err := s.ShouldRateLimit(context.Background(), r)
	if err != nil || out.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		tb.Fatalf("got %v, %v", out, err)
	}
	data, err := envoy.Codec{}.Marshal(out)
	if err != nil {
		tb.Fatal(err)
	}
	data.Free()
}

// BenchmarkShouldRateLimit is the RLS path in process (decideRLS): the adapter,
// CheckRateLimit on the in-memory store, and Codec's marshalling of the answer (one
// descriptor, allowed), with ReuseAnswers as cmd/warden sets it.
func BenchmarkShouldRateLimit(b *testing.B) {
	s, reqs := rlsBench(b, envoy.RateLimitConfig{ReuseAnswers: true})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		decideRLS(b, s, reqs[i%rlsBenchUsers])
		i++
	}
}

// TestShouldRateLimitAllocs guards the RLS path's allocations per decision (decideRLS):
// Warden's answer is reused (CheckRateLimitPooled), and with ReuseAnswers the call's block
// too (Warden's request and Envoy's answer; 6 allocations without it, 8 before either),
// which leaves the limit's key, the answer's header values and the marshalled bytes with
// their buffer slice.
func TestShouldRateLimitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	allocs := func(reuse bool) float64 {
		s, reqs := rlsBench(t, envoy.RateLimitConfig{ReuseAnswers: reuse})
		for _, r := range reqs { // every limit key created
			decideRLS(t, s, r)
		}
		i := 0
		return testing.AllocsPerRun(1000, func() {
			decideRLS(t, s, reqs[i%rlsBenchUsers])
			i++
		})
	}
	if got := allocs(false); got != 6 {
		t.Errorf("without ReuseAnswers: got %v allocations per decision, want 6", got)
	}
	if got := allocs(true); got != 5 {
		t.Errorf("with ReuseAnswers: got %v allocations per decision, want 5", got)
	}
}
