// Command floor is the bench's floor for the Envoy protocols: a gRPC server set up as
// cmd/warden sets up its own (the same server options and interceptor, health, reflection)
// whose ext_authz Check always allows and whose RLS ShouldRateLimit always answers OK, one
// OK status per descriptor, without looking at the request. The bench runner starts it
// pinned beside Warden and compares the Envoy rows with it. Not for production.
//
// With -redis ADDR its RLS decides on Redis instead, the two Redis floors of issue 19: one
// GCRA script (GET + SET PX of one timestamp string, on Redis TIME) per descriptor, sent
// with go-redis either as one EVALSHA per descriptor (-rls evalsha) or, for concurrent
// calls, batched into one pipeline that a single sender flushes whenever its queue empties
// (-rls batch). The limit (-limit per second) is high: every decision is OK unless the
// script says otherwise, and an over-limit descriptor answers OVER_LIMIT. Its ext_authz
// Check then counts each call the same way, one script call keyed by the request's path,
// and allows it unless over the limit: the floor of an ext_authz decision that counts a
// Redis limit.
//
//	go build -o /tmp/floor ./bench/floor && /tmp/floor -grpc-addr 127.0.0.1:0
//	/tmp/floor -grpc-addr 127.0.0.1:0 -redis 127.0.0.1:6379 -rls batch
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
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
	redisAddr := flag.String("redis", "", "decide RLS and ext_authz calls on this Redis (host:port) with a GCRA script; \"\" answers OK without deciding")
	mode := flag.String("rls", "evalsha", "with -redis: evalsha (one EVALSHA per RLS descriptor or ext_authz call) or batch (concurrent calls in one pipeline)")
	limit := flag.Int64("limit", 100000, "with -redis: requests per second per key")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var (
		authz authv3.AuthorizationServer   = allowAll{}
		rls   rlsv3.RateLimitServiceServer = okRLS{}
	)
	if *redisAddr != "" {
		r, err := newRedisRLS(*redisAddr, *mode, *limit)
		if err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		authz, rls = redisAuthz{r: r}, r
	}
	if err := run(*addr, authz, rls, log); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func run(addr string, authz authv3.AuthorizationServer, rls rlsv3.RateLimitServiceServer, log *slog.Logger) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// cmd/warden's server options with its config defaults (server section), stream workers
	// included (cmd/warden/transport.go: max(64, 16×GOMAXPROCS)), so that the floor does not
	// pay the per-call goroutine stack growth Warden no longer pays.
	s := grpc.NewServer(
		grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0)))),
		grpc.MaxRecvMsgSize(4<<20),
		grpc.MaxConcurrentStreams(1000),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.ChainUnaryInterceptor(service.RecoverUnary(log)),
		grpc.ChainStreamInterceptor(service.RecoverStream(log)),
	)
	authv3.RegisterAuthorizationServer(s, authz)
	rlsv3.RegisterRateLimitServiceServer(s, rls)
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
