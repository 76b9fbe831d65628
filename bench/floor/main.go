// Command floor is the bench's floor for the Envoy protocols: a gRPC server set up as
// cmd/warden sets up its own (the same server options and interceptor, health, reflection)
// whose ext_authz Check always allows and whose RLS ShouldRateLimit always answers OK, one
// OK status per descriptor, without looking at the request. The bench runner starts it
// pinned beside Warden and compares the Envoy rows with it. Not for production.
//
//	go build -o /tmp/floor ./bench/floor && /tmp/floor -grpc-addr 127.0.0.1:0
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/wardenhq/warden/service"
)

func main() {
	addr := flag.String("grpc-addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(*addr, log); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(addr string, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// cmd/warden's server options with its config defaults (server section).
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(4<<20),
		grpc.MaxConcurrentStreams(1000),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ChainUnaryInterceptor(service.RecoverUnary(log)),
		grpc.ChainStreamInterceptor(service.RecoverStream(log)),
	)
	authv3.RegisterAuthorizationServer(s, allowAll{})
	rlsv3.RegisterRateLimitServiceServer(s, okRLS{})
	h := health.NewServer()
	healthpb.RegisterHealthServer(s, h)
	reflection.Register(s)
	// The same line Warden logs: the runner reads the address from it.
	log.Info("warden listening", "grpc", lis.Addr().String(), "floor", true)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); s.Stop() }()
	if err := s.Serve(lis); err != nil && err != grpc.ErrServerStopped {
		return err
	}
	return nil
}

// allowAll is an ext_authz handler that always allows.
type allowAll struct {
	authv3.UnimplementedAuthorizationServer
}

func (allowAll) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

// okRLS is a rate limit service that answers OK for every descriptor.
type okRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (okRLS) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	st := make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(req.GetDescriptors()))
	for i := range st {
		st[i] = &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: st}, nil
}
