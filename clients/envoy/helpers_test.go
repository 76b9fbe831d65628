package envoy_test

import (
	"context"
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
)

// serveEnvoy runs the adapters on a real gRPC server over an in-memory connection and returns
// the clients Envoy would use.
func serveEnvoy(t *testing.T, auth *envoy.AuthServer, rls *envoy.RateLimitServer) (authv3.AuthorizationClient, rlsv3.RateLimitServiceClient) {
	t.Helper()
	cc := serveGRPC(t, func(gs *grpc.Server) {
		if auth != nil {
			authv3.RegisterAuthorizationServer(gs, auth)
		}
		if rls != nil {
			rlsv3.RegisterRateLimitServiceServer(gs, rls)
		}
	})
	return authv3.NewAuthorizationClient(cc), rlsv3.NewRateLimitServiceClient(cc)
}

// serveGRPC runs a real gRPC server with what register registers over an in-memory connection
// and returns a connection to it.
func serveGRPC(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	return serveGRPCWith(t, nil, register)
}

// serveGRPCWith is serveGRPC with server options.
func serveGRPCWith(t *testing.T, opts []grpc.ServerOption, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer(opts...)
	register(gs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// upstream returns the headers the upstream receives when Envoy applies an OK response to r.
func upstream(t *testing.T, r envoytest.Request, resp *authv3.CheckResponse) map[string][]string {
	t.Helper()
	up, err := envoytest.Upstream(r, resp)
	if err != nil {
		t.Fatal(err)
	}
	return up
}
