package clients_test

import (
	"context"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// BenchmarkOverhead measures what the interceptor and the middleware add to a request, in one
// run: the same empty handler called bare, then through each configuration, each request
// presenting the static API key keys.bench (owner bench, role reader) to a real Warden on
// loopback (in-memory store). The floors are the same Check calls made straight through the
// Client: the public route, and the explicit action (authentication, authorization).
//
//	go test -run '^$' -bench Overhead -benchtime 3000x ./clients/
func BenchmarkOverhead(b *testing.B) {
	addr := startWarden(b, testConfig)
	wc := clients.NewClient(dial(b, addr))
	creds := &wardenv1.Credentials{Headers: map[string]string{"authorization": "Bearer " + keys.bench}}
	res := &wardenv1.Resource{Type: "orders", Owner: "bench"}
	actions := clients.WithRequestActions(func(context.Context, string, any) (string, *wardenv1.Resource, bool) {
		return "orders:read", res, true
	})
	limits := clients.WithRateLimits(func(context.Context, string) (string, []*wardenv1.RateLimitDescriptor) {
		return "api", []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "bench", Value: "b"}}}}
	})
	cache := func() clients.HandlerOption {
		return clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))
	}

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

	cases := []struct {
		name string
		opts []clients.HandlerOption
	}{
		{"route", nil},
		{"action", []clients.HandlerOption{actions}},
		{"action+limit", []clients.HandlerOption{actions, limits}},
		{"cache-hit/action", []clients.HandlerOption{actions, cache()}},
		{"cache-hit/action+limit", []clients.HandlerOption{actions, limits, cache()}},
		{"cache-hit/route", []clients.HandlerOption{cache()}},
	}

	handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
	info := &grpc.UnaryServerInfo{FullMethod: "/test.v1.Shop/Ping"}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+keys.bench))
	b.Run("grpc/bare-handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = handler(ctx, nil)
		}
	})
	for _, bc := range cases {
		b.Run("grpc/"+bc.name, func(b *testing.B) {
			icpt := clients.UnaryServerInterceptor(wc, bc.opts...)
			// The first call fills the cache and checks that the case is allowed.
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

	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	r, err := http.NewRequest("GET", "http://shop/v1/ping", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+keys.bench)
	w := &discardWriter{h: http.Header{}}
	b.Run("http/bare-handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			ok.ServeHTTP(w, r)
		}
	})
	for _, bc := range cases {
		b.Run("http/"+bc.name, func(b *testing.B) {
			status := 0
			h := clients.Middleware(wc, bc.opts...)(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { status = 200 }))
			h.ServeHTTP(w, r)
			if status != 200 {
				b.Fatal("the first request was not allowed")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}
