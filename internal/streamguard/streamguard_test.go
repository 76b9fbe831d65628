package streamguard_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/internal/streamguard"
)

// clock is a clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// serve runs a gRPC health server behind g on loopback and returns its address.
func serve(t *testing.T, g *streamguard.Guard) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.InTapHandle(g.TapHandle))
	healthpb.RegisterHealthServer(s, health.NewServer())
	go func() { _ = s.Serve(g.Listener(lis)) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func healthClient(t *testing.T, addr string) healthpb.HealthClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return healthpb.NewHealthClient(cc)
}

func TestNewStreamsOverBudgetRefused(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	g := streamguard.New(streamguard.Config{Rate: 1, Burst: 5, CloseAfter: 1000, Now: clk.now})
	hc := healthClient(t, serve(t, g))
	ctx := context.Background()
	for i := range 8 {
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if want := codes.OK; i >= 5 {
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("call %d: got %v, want RESOURCE_EXHAUSTED (the budget of 5 is spent)", i, err)
			}
		} else if status.Code(err) != want {
			t.Errorf("call %d: got %v, want OK", i, err)
		}
	}
	clk.advance(2 * time.Second) // two more tokens
	for i := range 2 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("after 2 s, call %d: got %v, want OK", i, err)
		}
	}
	if s := g.Stats(); s.Refused != 3 || s.Closed != 0 {
		t.Errorf("stats: got %+v, want 3 refused, none closed", s)
	}
}

// resetStreams opens a connection to addr and sends n HEADERS each followed by RST_STREAM,
// then reads until the server closes the connection or timeout passes. It reports whether the
// server closed it.
func resetStreams(t *testing.T, addr string, n int, timeout time.Duration) (closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bw := bufio.NewWriter(c)
	_, _ = bw.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(bw, nil)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"},
		{":authority", addr}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range n {
		id := uint32(2*i + 1)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true})
		_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
	}
	_ = bw.Flush()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	_, err = io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false // still open
	}
	return true // EOF or reset: closed by the server
}

func TestRapidResetClosesTheConnectionAndPenalizesItsSource(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	g := streamguard.New(streamguard.Config{ResetRate: 10, ResetBurst: 20, Penalty: time.Minute, Now: clk.now})
	addr := serve(t, g)
	hc := healthClient(t, addr)
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// Within the reset budget: the connection stays open.
	if resetStreams(t, addr, 10, 200*time.Millisecond) {
		t.Fatal("10 resets, within the budget of 20: the connection was closed")
	}
	// Over it: closed.
	if !resetStreams(t, addr, 100, 5*time.Second) {
		t.Fatal("100 resets on a budget of 20: the connection stayed open")
	}
	// The source's new connections are closed on accept during the penalty...
	if !resetStreams(t, addr, 0, 5*time.Second) {
		t.Error("a new connection during the penalty stayed open")
	}
	if s := g.Stats(); s.Closed != 1 || s.Rejected != 1 {
		t.Errorf("stats: got %+v, want 1 closed and 1 rejected", s)
	}
	// ...but established ones are not touched, and the penalty ends.
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("the well-behaved connection: %v", err)
	}
	clk.advance(time.Minute)
	if resetStreams(t, addr, 0, 200*time.Millisecond) {
		t.Error("a new connection after the penalty was closed")
	}
}

func TestTapHandleDoesNotAllocate(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	g := streamguard.New(streamguard.Config{Rate: 1, Burst: 1, CloseAfter: 1 << 30, Now: clk.now})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := g.Listener(lis)
	defer gl.Close()
	client, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := gl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: server.RemoteAddr(), LocalAddr: server.LocalAddr()})
	// One admitted stream, then refusals: both paths.
	if n := testing.AllocsPerRun(1000, func() { _, _ = g.TapHandle(ctx, nil) }); n != 0 {
		t.Errorf("TapHandle allocs = %v, want 0", n)
	}
	if s := g.Stats(); s.Refused != 1000 {
		t.Errorf("refused: got %d, want 1000 (the connection was found and its one token spent)", s.Refused)
	}
}
