package clients_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// BenchmarkUnaryInterceptor measures what the interceptor adds to a call: the handler is
// empty, so each op is the interceptor's own work plus its round trips to a real Warden on
// loopback (in-memory store). Cases that need authentication are skipped while the Warden
// under test does not implement Authenticate.
//
//	go test -run '^$' -bench UnaryInterceptor -benchtime 2000x ./clients/
func BenchmarkUnaryInterceptor(b *testing.B) {
	addr := startWarden(b, testConfig+benchAuthnConfig)
	wc := clients.NewClient(dial(b, addr))
	handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
	md := metadata.Pairs("authorization", "Bearer "+benchAPIKey)
	authnWired := true
	if _, err := wc.Authenticate(context.Background(), &wardenv1.Credentials{ApiKey: benchAPIKey}); status.Code(err) == codes.Unimplemented {
		authnWired = false
	}
	actions := func(string) (string, *wardenv1.Resource, bool) {
		return "orders:read", &wardenv1.Resource{Type: "orders", Owner: "bench"}, true
	}
	// The floor: the same Check the route case sends, straight through the Client.
	b.Run("floor/client.Check", func(b *testing.B) {
		req := &wardenv1.CheckRequest{GrpcMethod: "/test.v1.Shop/Ping", Http: &wardenv1.HttpRequest{Method: "POST", Path: "/test.v1.Shop/Ping"},
			Credentials: &wardenv1.Credentials{Headers: map[string]string{"authorization": "Bearer " + benchAPIKey}}}
		b.ReportAllocs()
		for b.Loop() {
			if d, err := wc.Check(context.Background(), req); err != nil || !d.GetAllowed() {
				b.Fatal(d, err)
			}
		}
	})
	for _, bc := range []struct {
		name  string
		authn bool
		opts  []clients.HandlerOption
	}{
		{"route/public", false, nil},
		{"action/check", true, []clients.HandlerOption{clients.WithActions(actions)}},
		{"action/cache", true, []clients.HandlerOption{clients.WithActions(actions), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.authn && !authnWired {
				b.Skip("the Warden under test does not implement Authenticate yet")
			}
			icpt := clients.UnaryServerInterceptor(wc, bc.opts...)
			info := &grpc.UnaryServerInfo{FullMethod: "/test.v1.Shop/Ping"}
			ctx := metadata.NewIncomingContext(context.Background(), md)
			if _, err := icpt(ctx, nil, info, handler); err != nil {
				b.Fatal(err)
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

// benchAPIKey and benchAuthnConfig are placeholders until the authn section lands: the
// benchmark cases that authenticate skip themselves meanwhile.
const (
	benchAPIKey      = "sk-test-bench"
	benchAuthnConfig = ""
)
