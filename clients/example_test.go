package clients_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// The examples dial 127.0.0.1:1, where nothing listens, so that their output does not depend
// on a running Warden: they show the failure policies. The end-to-end tests show decisions.

func ExampleNewClient() {
	// DialOptions: reconnection within about half a second of Warden's return, and a
	// health-checked channel.
	conn, err := grpc.NewClient("127.0.0.1:1", append(clients.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	wc := clients.NewClient(conn,
		clients.WithTimeout(100*time.Millisecond),
		clients.WithRetry(2, 5*time.Millisecond, 20*time.Millisecond),
		clients.WithAuthFailurePolicy(clients.FailOpen), // rate limiting fails open by default
		clients.WithLogger(slog.New(slog.DiscardHandler)),
	)
	d, err := wc.Check(context.Background(), &wardenv1.CheckRequest{
		Credentials: &wardenv1.Credentials{ApiKey: "sk-test-…"},
		Action:      "orders:read",
		Resource:    &wardenv1.Resource{Type: "orders", Id: "o-1", Owner: "alice"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Warden is unreachable and the client fails open: the decision says so.
	fmt.Println("allowed:", d.GetAllowed(), "failed open:", d.FailedOpen, "error:", d.Err())
	// Output:
	// allowed: true failed open: true error: <nil>
}

func ExampleUnaryServerInterceptor() {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	wc := clients.NewClient(conn, clients.WithLogger(slog.New(slog.DiscardHandler)))

	// Methods can go to Warden's route table (`POST /pkg.Service/Method` routes), or be
	// mapped to actions here, seeing the request message: a resource's owner can come from
	// one of its fields, and ownership is then decided in the interceptor's one Check.
	actions := func(_ context.Context, method string, req any) (string, *wardenv1.Resource, bool) {
		switch method {
		case "/shop.v1.Orders/List":
			return "orders:list", &wardenv1.Resource{Type: "orders"}, true
		case "/shop.v1.Orders/Get":
			if r, ok := req.(interface{ GetOwner() string }); ok {
				return "orders:read", &wardenv1.Resource{Type: "orders", Owner: r.GetOwner()}, true
			}
		}
		return "", nil, false
	}
	limits := func(_ context.Context, method string) (string, []*wardenv1.RateLimitDescriptor) {
		return "shop", []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "method", Value: method}}}}
	}
	cache := clients.NewAuthnCache(clients.CacheConfig{TTL: 5 * time.Second})
	opts := []clients.HandlerOption{clients.WithRequestActions(actions), clients.WithRateLimits(limits), clients.WithAuthnCache(cache)}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc, opts...)),
		grpc.ChainStreamInterceptor(clients.StreamServerInterceptor(wc, opts...)),
	)
	defer srv.Stop()

	// A handler reads the caller from its context.
	handler := func(ctx context.Context, _ any) (any, error) {
		p, ok := clients.PrincipalFrom(ctx)
		return fmt.Sprint(p.GetSubject(), ok), nil
	}
	// Call the interceptor directly to show what a client sees while Warden is down.
	_, err = clients.UnaryServerInterceptor(wc, opts...)(context.Background(), nil,
		&grpc.UnaryServerInfo{FullMethod: "/shop.v1.Orders/List"}, handler)
	fmt.Println(err)
	// When the application learns that a key was revoked, it drops it from its cache.
	fmt.Println("invalidated:", cache.Invalidate("key_123"))
	// Output:
	// rpc error: code = Unavailable desc = the authorization service is unavailable; retry later
	// invalidated: 0
}

func ExampleMiddleware() {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer conn.Close()
	wc := clients.NewClient(conn, clients.WithLogger(slog.New(slog.DiscardHandler)))

	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, _ := clients.PrincipalFrom(r.Context())
		fmt.Fprintf(w, "order %s for %s\n", r.PathValue("id"), p.GetSubject())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	h := clients.Middleware(wc, clients.WithSkip("/healthz"))(mux)

	for _, path := range []string{"/healthz", "/v1/orders/o-1"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer sk-test-…")
		h.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 200 ok
	// 503 {"error":{"code":503,"message":"the authorization service is unavailable; retry later"}}
}
