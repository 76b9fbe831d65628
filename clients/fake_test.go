package clients_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// fakeWarden is a tiny WardenService for what a real Warden cannot be made to do on demand:
// answer UNAVAILABLE, hang until the deadline, or count how often each RPC is called. Each
// hook answers its RPC; a nil hook answers UNIMPLEMENTED.
type fakeWarden struct {
	wardenv1.UnimplementedWardenServiceServer

	check          func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error)
	authenticate   func(context.Context, *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error)
	authorize      func(context.Context, *wardenv1.AuthorizeRequest) (*wardenv1.AuthorizeResponse, error)
	checkRateLimit func(context.Context, *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error)

	mu       sync.Mutex
	calls    map[string]int
	deadline time.Time // of the last call, zero if it had none
}

func (f *fakeWarden) record(ctx context.Context, rpc string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[rpc]++
	f.deadline, _ = ctx.Deadline()
}

// count returns how often rpc was called.
func (f *fakeWarden) count(rpc string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[rpc]
}

func (f *fakeWarden) lastDeadline() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deadline
}

func (f *fakeWarden) Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	f.record(ctx, "Check")
	if f.check == nil {
		return f.UnimplementedWardenServiceServer.Check(ctx, req)
	}
	return f.check(ctx, req)
}

func (f *fakeWarden) Authenticate(ctx context.Context, req *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error) {
	f.record(ctx, "Authenticate")
	if f.authenticate == nil {
		return f.UnimplementedWardenServiceServer.Authenticate(ctx, req)
	}
	return f.authenticate(ctx, req)
}

func (f *fakeWarden) Authorize(ctx context.Context, req *wardenv1.AuthorizeRequest) (*wardenv1.AuthorizeResponse, error) {
	f.record(ctx, "Authorize")
	if f.authorize == nil {
		return f.UnimplementedWardenServiceServer.Authorize(ctx, req)
	}
	return f.authorize(ctx, req)
}

func (f *fakeWarden) CheckRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error) {
	f.record(ctx, "CheckRateLimit")
	if f.checkRateLimit == nil {
		return f.UnimplementedWardenServiceServer.CheckRateLimit(ctx, req)
	}
	return f.checkRateLimit(ctx, req)
}

// startFake serves f on loopback and returns its address.
func startFake(t testing.TB, f *fakeWarden) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	wardenv1.RegisterWardenServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
