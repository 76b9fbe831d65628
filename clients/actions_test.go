package clients_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// ordersDesc is test.v1.Orders/Get, whose request names the order's owner (a StringValue)
// and whose answer is the caller's subject.
var ordersDesc = grpc.ServiceDesc{
	ServiceName: "test.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{MethodName: "Get", Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
		in := new(wrapperspb.StringValue)
		if err := dec(in); err != nil {
			return nil, err
		}
		return icpt(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/test.v1.Orders/Get"}, func(ctx context.Context, _ any) (any, error) {
			return whoAmI(ctx), nil
		})
	}}},
}

// ownerAction maps Get to orders:read on an order owned by the request's owner field.
func ownerAction(_ context.Context, name string, req any) (string, *wardenv1.Resource, bool) {
	m, ok := req.(*wrapperspb.StringValue)
	if name != "/test.v1.Orders/Get" || !ok {
		return "", nil, false
	}
	return "orders:read", &wardenv1.Resource{Type: "orders", Id: "o-1", Owner: m.GetValue()}, true
}

// TestRequestActionsOwnership decides ownership from a field of the request message in the
// interceptor's one Check, against the real Warden: someone else's order is NOT_FOUND and
// spends none of the caller's quota (1 a minute), so the caller's own order still goes
// through, once.
func TestRequestActionsOwnership(t *testing.T) {
	addr := startWarden(t, testConfig)
	wc := clients.NewClient(dial(t, addr), clients.WithTimeout(5*time.Second))
	limits := func(context.Context, string) (string, []*wardenv1.RateLimitDescriptor) {
		return "api", []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "client", Value: "ownership-test"}}}}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc, clients.WithRequestActions(ownerAction), clients.WithRateLimits(limits))))
	srv.RegisterService(&ordersDesc, struct{}{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn := dial(t, lis.Addr().String())
	get := func(owner string) (string, error) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+keys.alice)
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(ctx, "/test.v1.Orders/Get", wrapperspb.String(owner), out)
		return out.GetValue(), err
	}
	for range 3 {
		if _, err := get("bob"); status.Code(err) != codes.NotFound {
			t.Fatalf("bob's order: got %v, want NOT_FOUND", err)
		}
	}
	if sub, err := get("alice"); err != nil || sub != "alice" {
		t.Fatalf("alice's order after three refusals: got (%q, %v), want (\"alice\", nil): refusals spent no quota", sub, err)
	}
	if _, err := get("alice"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alice's order again: got %v, want RESOURCE_EXHAUSTED (1 a minute)", err)
	}
}

// TestRequestActionsSeeTheRequest checks what the mapping function is given: the message for
// a unary call, the *http.Request for the middleware.
func TestRequestActionsSeeTheRequest(t *testing.T) {
	rc := &recordingCheck{resp: identity}
	wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rc.check})))
	var seen []any
	record := func(_ context.Context, name string, req any) (string, *wardenv1.Resource, bool) {
		seen = append(seen, req)
		return "", nil, false
	}
	shop := startShop(t, wc, clients.WithRequestActions(record))
	if _, err := callShop(context.Background(), shop, "Ping"); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0] == nil {
		t.Fatalf("unary: got %v, want the request message", seen)
	}
	rec := httptest.NewRecorder()
	clients.Middleware(wc, clients.WithRequestActions(record))(okHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ping", nil))
	if r, ok := seen[len(seen)-1].(*http.Request); len(seen) != 2 || !ok || r.URL.Path != "/v1/ping" {
		t.Fatalf("middleware: got %v, want the *http.Request", seen)
	}
}
