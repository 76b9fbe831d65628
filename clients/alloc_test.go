package clients_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// maxWrapperAllocs is what the interceptor and the middleware may allocate per request over
// a bare Client.Check of the same CheckRequest.
const maxWrapperAllocs = 10

// stubStream stands in for the server's transport stream, so that grpc.SetHeader works
// outside a server.
type stubStream struct{}

func (stubStream) Method() string                  { return "/test.v1.Shop/GetOrder" }
func (stubStream) SetHeader(metadata.MD) error     { return nil }
func (stubStream) SendHeader(metadata.MD) error    { return nil }
func (stubStream) SetTrailer(md metadata.MD) error { return nil }

// discardWriter is a ResponseWriter that keeps nothing but its header map (cleared per use).
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// TestWrapperAllocs guards the interceptor's and the middleware's own cost: allocations per
// request, Warden's answer included, minus those of a bare Client.Check made by hand for the
// same request (read the metadata or headers, build the same CheckRequest, call Check), which
// gets the same answer from an in-process fake Warden on loopback. What is left is the
// wrappers' own work: skip list, response headers, identity headers removed and Warden's set,
// the principal in the context, the request copy the handler gets.
func TestWrapperAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	rc := &recordingCheck{resp: identity}
	wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: rc.check})), clients.WithTimeout(10*time.Second))
	const runs = 300
	// bare measures build+Check, after checking that build makes the request the wrapper
	// sent.
	bare := func(t *testing.T, ctx context.Context, build func() *wardenv1.CheckRequest) float64 {
		t.Helper()
		if sent, floor := rc.request(), build(); !proto.Equal(sent, floor) {
			t.Fatalf("the floor's request differs from the wrapper's:\n got %v\nwant %v", floor, sent)
		}
		return testing.AllocsPerRun(runs, func() {
			if _, err := wc.Check(ctx, build()); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("interceptor", func(t *testing.T) {
		icpt := clients.UnaryServerInterceptor(wc)
		info := &grpc.UnaryServerInfo{FullMethod: "/test.v1.Shop/GetOrder"}
		md := metadata.Pairs("authorization", "Bearer k", ":authority", "shop", "content-type", "application/grpc", "user-agent", "grpc-go")
		ctx := grpc.NewContextWithServerTransportStream(metadata.NewIncomingContext(context.Background(), md), stubStream{})
		handler := func(context.Context, any) (any, error) { return nil, nil }
		call := func() {
			if _, err := icpt(ctx, nil, info, handler); err != nil {
				t.Fatal(err)
			}
		}
		call()
		floor := bare(t, ctx, func() *wardenv1.CheckRequest {
			md, _ := metadata.FromIncomingContext(ctx)
			text := make(map[string]string, len(md))
			for k, v := range md {
				if !strings.HasPrefix(k, ":") {
					text[k] = strings.Join(v, ",")
				}
			}
			var host string
			if v := md.Get(":authority"); len(v) > 0 {
				host = v[0]
			}
			return &wardenv1.CheckRequest{
				Credentials: &wardenv1.Credentials{Headers: map[string]string{"authorization": strings.Join(md.Get("authorization"), ",")}},
				Http:        &wardenv1.HttpRequest{Method: "POST", Path: info.FullMethod, Host: host, Headers: text},
				GrpcMethod:  info.FullMethod,
			}
		})
		got := testing.AllocsPerRun(runs, call)
		t.Logf("interceptor %.0f allocs, bare Client.Check %.0f: +%.0f", got, floor, got-floor)
		if got-floor > maxWrapperAllocs {
			t.Errorf("the interceptor allocates %.0f over a bare Client.Check (%.0f vs %.0f), want at most %d", got-floor, got, floor, maxWrapperAllocs)
		}
	})
	t.Run("middleware", func(t *testing.T) {
		h := clients.Middleware(wc)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		r, err := http.NewRequest("GET", "http://shop/v1/orders/o-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Authorization", "Bearer k")
		r.Header.Set("User-Agent", "curl/8")
		r.Header.Set("Accept", "*/*")
		w := &discardWriter{h: http.Header{}}
		call := func() {
			clear(w.h)
			h.ServeHTTP(w, r)
		}
		call()
		floor := bare(t, context.Background(), func() *wardenv1.CheckRequest {
			headers := make(map[string]string, len(r.Header))
			for k, v := range r.Header {
				headers[strings.ToLower(k)] = strings.Join(v, ",")
			}
			return &wardenv1.CheckRequest{
				Credentials: &wardenv1.Credentials{Headers: map[string]string{"authorization": r.Header.Get("Authorization")}},
				Http:        &wardenv1.HttpRequest{Method: r.Method, Path: r.URL.EscapedPath(), Host: r.Host, Headers: headers},
			}
		})
		got := testing.AllocsPerRun(runs, call)
		t.Logf("middleware %.0f allocs, bare Client.Check %.0f: +%.0f", got, floor, got-floor)
		if got-floor > maxWrapperAllocs {
			t.Errorf("the middleware allocates %.0f over a bare Client.Check (%.0f vs %.0f), want at most %d", got-floor, got, floor, maxWrapperAllocs)
		}
	})
}
