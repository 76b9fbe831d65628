package clients_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/clients"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/internal/redistest"
)

// probe is what a handler saw: the principal's subject, the fail-open marker, and whether a
// client-sent identity value reached it.
type probe struct {
	ran, marked, leaked bool
	subject             string
	err                 string // what the end client got instead, when the handler did not run
	took                time.Duration
}

func (p probe) ok() bool { return p.ran && p.subject == "alice" && !p.marked }

// outageObserver sends one request through one transport and configuration.
type outageObserver struct {
	name     string
	failOpen bool
	send     func() probe
}

// handlerProbe encodes what a handler sees as "subject|marked|leaked".
func handlerProbe(ctx context.Context, values []string) string {
	p, _ := clients.PrincipalFrom(ctx)
	leaked := false
	for _, v := range values {
		leaked = leaked || strings.Contains(v, forgedValue)
	}
	return fmt.Sprintf("%s|%t|%t", p.GetSubject(), clients.FailedOpenFrom(ctx), leaked)
}

func parseProbe(s string) probe {
	f := strings.Split(s, "|")
	if len(f) != 3 {
		return probe{err: "bad handler answer " + s}
	}
	return probe{ran: true, subject: f[0], marked: f[1] == "true", leaked: f[2] == "true"}
}

// httpObserver runs the middleware in front of a handler that reports what it sees.
func httpObserver(t *testing.T, name string, wc *clients.Client, failOpen bool) outageObserver {
	h := clients.Middleware(wc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var values []string
		for _, v := range r.Header {
			values = append(values, v...)
		}
		_, _ = io.WriteString(w, handlerProbe(r.Context(), values))
	}))
	return outageObserver{name: name, failOpen: failOpen, send: func() probe {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/v1/users/alice/orders", nil)
		req.Header.Set("Authorization", "Bearer "+keys.alice)
		req.Header.Set(idheader.Subject, forgedValue)
		req.Header.Add("X-WARDEN-IMPERSONATE", forgedValue)
		start := time.Now()
		h.ServeHTTP(rec, req)
		took := time.Since(start)
		if rec.Code != http.StatusOK {
			return probe{err: fmt.Sprintf("%d Retry-After=%q %s", rec.Code, rec.Header().Get("Retry-After"), strings.TrimSpace(rec.Body.String())), took: took}
		}
		p := parseProbe(rec.Body.String())
		p.took = took
		return p
	}}
}

// grpcObserver serves test.v1.Shop/GetOrder behind the interceptor, with a handler that
// reports what it sees, and calls it.
func grpcObserver(t *testing.T, name string, wc *clients.Client, failOpen bool) outageObserver {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc)))
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.v1.Shop",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "GetOrder", Handler: func(_ any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(new(emptypb.Empty)); err != nil {
				return nil, err
			}
			return icpt(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/test.v1.Shop/GetOrder"}, func(ctx context.Context, _ any) (any, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				var values []string
				for _, v := range md {
					values = append(values, v...)
				}
				return wrapperspb.String(handlerProbe(ctx, values)), nil
			})
		}}},
	}, struct{}{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn := dial(t, lis.Addr().String())
	return outageObserver{name: name, failOpen: failOpen, send: func() probe {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+keys.alice,
			idheader.Subject, forgedValue, "x-warden-impersonate", forgedValue, "X-Warden-Impersonate", forgedValue)
		start := time.Now()
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(ctx, "/test.v1.Shop/GetOrder", &emptypb.Empty{}, out)
		took := time.Since(start)
		if err != nil {
			return probe{err: status.Code(err).String() + ": " + status.Convert(err).Message(), took: took}
		}
		p := parseProbe(out.GetValue())
		p.took = took
		return p
	}}
}

// TestOutageRealWarden runs the real binary behind a loopback proxy and takes it through a
// slow spell (the proxy holds requests longer than the client's timeout), a kill and a
// restart on the same address, with a middleware and an interceptor each failing closed (the
// default) and failing open for authentication. Every request is answered within a bound;
// a fail-closed one gets 503 (with Retry-After) / 504 or UNAVAILABLE / DEADLINE_EXCEEDED, a
// failed-open one reaches its handler marked, without a principal; no handler ever sees a
// client-sent identity header; and requests are decided again within 1.5 s of Warden's
// return. A client on gRPC's default connection parameters is measured alongside, for the
// README, without a bound.
func TestOutageRealWarden(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary through a 2.5 s outage")
	}
	addr, kill := startWardenAt(t, testConfig, closedAddr(t))
	proxy := redistest.StartProxy(t, addr, 0) // a TCP proxy, nothing Redis about it
	quiet := clients.WithLogger(slog.New(slog.DiscardHandler))
	client := func(failOpen bool, dialOpts []grpc.DialOption) *clients.Client {
		conn, err := grpc.NewClient(proxy.Addr(), append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		opts := []clients.ClientOption{quiet}
		if failOpen {
			opts = append(opts, clients.WithAuthFailurePolicy(clients.FailOpen))
		}
		return clients.NewClient(conn, opts...)
	}
	rec := clients.DialOptions()
	observers := []outageObserver{
		httpObserver(t, "http fail closed", client(false, rec), false),
		httpObserver(t, "http fail open", client(true, rec), true),
		grpcObserver(t, "grpc fail closed", client(false, rec), false),
		grpcObserver(t, "grpc fail open", client(true, rec), true),
	}
	baseline := grpcObserver(t, "grpc fail closed, gRPC's default connection parameters", client(false, nil), false)

	// bound is the longest any request may take: the client's timeout plus a margin for a
	// loaded machine.
	const bound = clients.DefaultTimeout + 750*time.Millisecond
	var longest time.Duration
	check := func(phase string, o outageObserver, p probe, wantOK bool) {
		t.Helper()
		longest = max(longest, p.took)
		switch {
		case p.leaked:
			t.Errorf("%s, %s: a client-sent identity header reached the handler", phase, o.name)
		case p.took > bound:
			t.Errorf("%s, %s: took %v, want at most %v", phase, o.name, p.took, bound)
		case wantOK && !p.ok():
			t.Errorf("%s, %s: got %+v, want alice's request through", phase, o.name, p)
		case wantOK:
		case o.failOpen && (!p.ran || !p.marked || p.subject != ""):
			t.Errorf("%s, %s: got %+v, want the handler run, marked failed open, without a principal", phase, o.name, p)
		case !o.failOpen && p.ran:
			t.Errorf("%s, %s: got %+v, want refused", phase, o.name, p)
		case !o.failOpen && strings.HasPrefix(p.err, "503") && !strings.Contains(p.err, `Retry-After="1"`):
			t.Errorf("%s, %s: got %s, want Retry-After on 503", phase, o.name, p.err)
		}
	}

	for _, o := range append(observers, baseline) {
		check("up", o, o.send(), true)
	}

	proxy.SetDelay(time.Second)
	for range 2 {
		for _, o := range observers {
			check("slow", o, o.send(), false)
		}
	}
	proxy.SetDelay(0)

	kill()
	down := time.Now()
	for time.Since(down) < 2500*time.Millisecond {
		for _, o := range append(observers, baseline) {
			check("down", o, o.send(), false)
		}
		time.Sleep(20 * time.Millisecond)
	}

	startWardenAt(t, testConfig, addr)
	back := time.Now()
	var wg sync.WaitGroup
	recovered := make([]time.Duration, len(observers)+1)
	for i, o := range append(observers, baseline) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(back) < 6*time.Second {
				if p := o.send(); p.ok() {
					recovered[i] = time.Since(back)
					return
				} else if p.leaked {
					t.Errorf("recovering, %s: a client-sent identity header reached the handler", o.name)
				}
				time.Sleep(10 * time.Millisecond)
			}
			recovered[i] = -1
		}()
	}
	wg.Wait()
	for i, o := range observers {
		if recovered[i] < 0 || recovered[i] > 1500*time.Millisecond {
			t.Errorf("%s: decided again %v after Warden's return, want within 1.5s", o.name, recovered[i])
		}
		t.Logf("%s: decided again %v after Warden's return", o.name, recovered[i])
	}
	t.Logf("%s: decided again %v after Warden's return (-1: not within 6s)", baseline.name, recovered[len(observers)])
	t.Logf("longest request during the test: %v (bound %v)", longest, bound)
}
