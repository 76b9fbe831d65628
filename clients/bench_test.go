package clients_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// BenchmarkUnaryInterceptor measures what the interceptor adds to a call: the handler is
// empty, so each op is the interceptor's own work plus its round trips to a real Warden on
// loopback (in-memory store), presenting the static API key keys.bench (owner bench, role
// reader). The floors are the same Check calls made straight through the Client: the public
// route (no authentication), and the explicit action (authentication, authorization).
//
//	go test -run '^$' -bench UnaryInterceptor -benchtime 3000x ./clients/
func BenchmarkUnaryInterceptor(b *testing.B) {
	addr := startWarden(b, testConfig)
	wc := clients.NewClient(dial(b, addr))
	handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
	md := metadata.Pairs("authorization", "Bearer "+keys.bench)
	creds := &wardenv1.Credentials{Headers: map[string]string{"authorization": "Bearer " + keys.bench}}
	res := &wardenv1.Resource{Type: "orders", Owner: "bench"}
	actions := func(string) (string, *wardenv1.Resource, bool) { return "orders:read", res, true }
	for _, fc := range []struct {
		name string
		req  *wardenv1.CheckRequest
	}{
		{"floor/client.Check/route", &wardenv1.CheckRequest{GrpcMethod: "/test.v1.Shop/Ping",
			Http: &wardenv1.HttpRequest{Method: "POST", Path: "/test.v1.Shop/Ping"}, Credentials: creds}},
		{"floor/client.Check/action", &wardenv1.CheckRequest{Action: "orders:read", Resource: res, Credentials: creds}},
	} {
		b.Run(fc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, err := wc.Check(context.Background(), fc.req); err != nil || !d.GetAllowed() {
					b.Fatal(d, err)
				}
			}
		})
	}
	for _, bc := range []struct {
		name string
		opts []clients.HandlerOption
	}{
		{"route/public", nil},
		{"action/check", []clients.HandlerOption{clients.WithActions(actions)}},
		{"action/cache", []clients.HandlerOption{clients.WithActions(actions), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			icpt := clients.UnaryServerInterceptor(wc, bc.opts...)
			info := &grpc.UnaryServerInfo{FullMethod: "/test.v1.Shop/Ping"}
			ctx := metadata.NewIncomingContext(context.Background(), md)
			// The first call fills the cache (action/cache) and checks that the case is
			// allowed with the bench principal where it authenticates.
			var p *wardenv1.Principal
			if _, err := icpt(ctx, nil, info, func(ctx context.Context, _ any) (any, error) {
				p, _ = clients.PrincipalFrom(ctx)
				return nil, nil
			}); err != nil {
				b.Fatal(err)
			}
			if bc.opts != nil && p.GetSubject() != "bench" {
				b.Fatalf("principal: got %v, want bench", p)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := icpt(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
