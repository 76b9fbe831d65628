package service_test

import (
	"context"
	"fmt"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/service"
)

// BenchmarkGRPC compares CheckRateLimit with the health check (BENCH.md's floor for
// warden.v1) through a real gRPC server and client over an in-memory connection, so that
// marshalling and the transport count as they do in production.
func BenchmarkGRPC(b *testing.B) {
	s := service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Limiter: benchLimiter(b)}})
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(grpc.ChainUnaryInterceptor(service.RecoverUnary(quietLogger())))
	wardenv1.RegisterWardenServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis)
	defer gs.Stop()
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	w, h := wardenv1.NewWardenServiceClient(cc), healthpb.NewHealthClient(cc)
	reqs := make([]*wardenv1.CheckRateLimitRequest, benchUsers)
	for i := range reqs {
		reqs[i] = &wardenv1.CheckRateLimitRequest{Domain: "bench", Descriptors: []*wardenv1.RateLimitDescriptor{
			{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: fmt.Sprint("user-", i)}}}}}
	}
	ctx := context.Background()
	b.Run("floor=health", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("CheckRateLimit", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				resp, err := w.CheckRateLimit(ctx, reqs[i%benchUsers])
				if err != nil || !resp.Allowed {
					b.Errorf("got %v, %v", resp, err)
					return
				}
				i++
			}
		})
	})
}
