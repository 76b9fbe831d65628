// Command example is a tiny orders service protected by Warden: a gRPC service
// (example.v1.Orders/Get) behind clients.UnaryServerInterceptor and an HTTP API
// (GET /v1/orders/{id}) behind clients.Middleware, both asking the Warden at -warden.
//
// Run Warden with warden.yaml beside this file (its route table, and two demo API keys whose
// pepper comes from the environment), then the example, from the repository root:
//
//	WARDEN_PEPPER=example-pepper-not-a-secret-0123456789abcdef go run ./cmd/warden -config clients/example/warden.yaml &
//	go run ./clients/example -warden 127.0.0.1:50051 &
//	curl -i -H 'Authorization: Bearer sk-test-jJynqe5WkfMZ_DOS6e0DY9Y710CBzC5ID3M4enLUS' 127.0.0.1:8080/v1/orders/o-1
//
// alice's key answers 200 "order o-1 for alice"; bob's (sk-test-vAxFXU4eaCBl_…, a role with
// no grants) 403; no key 401 with WWW-Authenticate. main_test.go runs exactly this.
//
// The gRPC service is described by hand (grpc.ServiceDesc over wrapperspb.StringValue) so
// that the example needs no generated code.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/clients"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	wardenAddr := fs.String("warden", "127.0.0.1:50051", "Warden's gRPC address")
	grpcAddr := fs.String("grpc-addr", "127.0.0.1:8081", "this service's gRPC address")
	httpAddr := fs.String("http-addr", "127.0.0.1:8080", "this service's HTTP address")
	failOpen := fs.Bool("fail-open", false, "let requests through unauthenticated when Warden is unreachable")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))

	// The service owns the connection to Warden; the client only borrows it.
	// clients.DialOptions reconnects within about half a second of Warden's return.
	conn, err := grpc.NewClient(*wardenAddr, append(clients.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := []clients.ClientOption{clients.WithTimeout(100 * time.Millisecond), clients.WithLogger(log)}
	if *failOpen {
		opts = append(opts, clients.WithAuthFailurePolicy(clients.FailOpen))
	}
	wc := clients.NewClient(conn, opts...)

	// gRPC: every method but health goes through Warden's route table
	// (POST /example.v1.Orders/Get in warden.yaml).
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc)),
		grpc.ChainStreamInterceptor(clients.StreamServerInterceptor(wc)),
	)
	gs.RegisterService(&ordersDesc, nil)
	healthpb.RegisterHealthServer(gs, health.NewServer())

	// HTTP: /healthz is public here; the rest goes through Warden's route table.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, _ := clients.PrincipalFrom(r.Context())
		fmt.Fprintf(w, "order %s for %s\n", r.PathValue("id"), p.GetSubject())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	hs := &http.Server{
		Handler:           clients.Middleware(wc, clients.WithSkip("/healthz"))(mux),
		ReadHeaderTimeout: 5 * time.Second,
	}

	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	log.Info("example listening", "grpc", gl.Addr().String(), "http", hl.Addr().String(), "warden", *wardenAddr)
	errc := make(chan error, 2)
	go func() { errc <- gs.Serve(gl) }()
	go func() { errc <- hs.Serve(hl) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	gs.GracefulStop()
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	return err
}

// ordersDesc describes example.v1.Orders: Get takes an order id and answers a line naming the
// caller.
var ordersDesc = grpc.ServiceDesc{
	ServiceName: "example.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Get",
		Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			get := func(ctx context.Context, req any) (any, error) {
				p, _ := clients.PrincipalFrom(ctx)
				return wrapperspb.String("order " + req.(*wrapperspb.StringValue).GetValue() + " for " + p.GetSubject()), nil
			}
			if icpt == nil {
				return get(ctx, in)
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/example.v1.Orders/Get"}, get)
		},
	}},
}
