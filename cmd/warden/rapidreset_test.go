package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wardenhq/warden/internal/testutil"
)

// startBinary builds cmd/warden and runs it with config, returning its gRPC and admin
// addresses. The process is killed when the test ends.
func startBinary(t *testing.T, config string) (grpcAddr, adminAddr string) {
	t.Helper()
	bin := wardenBinary(t)
	cfgPath := filepath.Join(t.TempDir(), "warden.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd := exec.Command(bin, "-config", cfgPath, "-grpc-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0")
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	re := regexp.MustCompile(`"grpc":"(127\.0\.0\.1:\d+)","admin_http":"(127\.0\.0\.1:\d+)"`)
	testutil.WaitFor(t, 10*time.Second, "the listening log line", func() bool {
		m := re.FindStringSubmatch(logs.String())
		if m != nil {
			grpcAddr, adminAddr = m[1], m[2]
		}
		return m != nil
	})
	return grpcAddr, adminAddr
}

// rapidReset plays the HTTP/2 rapid-reset attacker (CVE-2023-44487) against addr: on each of
// conns connections, HEADERS for a new stream immediately followed by RST_STREAM, as fast as
// it can, until stop is closed or maxStreams streams were sent. A connection the server
// closes is opened again (10 ms after a failed attempt). It returns the streams sent and the
// connections the server closed.
func rapidReset(addr string, conns int, stop <-chan struct{}, maxStreams int64) (sent, closed int64) {
	var nSent, nClosed atomic.Int64
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if nSent.Load() >= maxStreams {
					return
				}
				if err := attackConn(addr, stop, &nSent, maxStreams); err != nil {
					nClosed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return nSent.Load(), nClosed.Load()
}

// attackConn runs one attacking connection; an error means the server closed it.
func attackConn(addr string, stop <-chan struct{}, sent *atomic.Int64, maxStreams int64) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return err
	}
	defer c.Close()
	bw := bufio.NewWriterSize(c, 64<<10)
	if _, err := bw.WriteString(http2.ClientPreface); err != nil {
		return err
	}
	fr := http2.NewFramer(bw, c)
	if err := fr.WriteSettings(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	// Wait for the server's SETTINGS, as an HTTP/2 client does: a connection Warden closes
	// on accept ends here, and the attacker comes back 10 ms later.
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := fr.ReadFrame(); err != nil {
		time.Sleep(10 * time.Millisecond)
		return err
	}
	_ = c.SetReadDeadline(time.Time{})
	// Drain what the server sends (RST_STREAM, GOAWAY), so it never blocks on us.
	go func() { _, _ = io.Copy(io.Discard, c) }()
	// The first block adds the fields to HPACK's dynamic table; the later ones refer to them.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	var blocks [2][]byte
	for i := range blocks {
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/grpc.health.v1.Health/Check"}, {Name: ":authority", Value: addr},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
		} {
			_ = enc.WriteField(f)
		}
		blocks[i] = slices.Clone(hb.Bytes())
		hb.Reset()
	}
	block, again := blocks[0], blocks[1]
	for id := uint32(1); id < 1<<31-1; id += 2 {
		if id%128 == 1 {
			select {
			case <-stop:
				return nil
			default:
			}
			if sent.Load() >= maxStreams {
				return nil
			}
		}
		b := again
		if id == 1 {
			b = block
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: b, EndHeaders: true}); err != nil {
			return err
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			return err
		}
		sent.Add(1)
		if id%64 == 63 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
	return errors.New("stream ids exhausted")
}

// p99 of a sequence of latencies.
func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

// legitCalls calls Health/Check one after another for d and returns the latencies.
func legitCalls(t *testing.T, hc healthpb.HealthClient, d time.Duration) []time.Duration {
	t.Helper()
	var lat []time.Duration
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		start := time.Now()
		_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		lat = append(lat, time.Since(start))
		cancel()
		if err != nil {
			t.Fatalf("legitimate call: %v", err)
		}
		time.Sleep(200 * time.Microsecond) // a steady caller, not a load generator
	}
	return lat
}

// TestTimingRapidResetBounded runs the real binary and attacks it with HTTP/2 rapid reset on
// two connections for 3 s (reopened when Warden closes them) while a legitimate caller keeps
// calling on its own connection: the caller's p99 during the attack must stay within 5x its
// p99 before it, and Warden must have closed the attacker's connections. The machine is
// shared (the attacker runs on the same cores, and so may other work): an attempt over 5x is
// tried again on a fresh server, at most three times; without the guard every attempt is
// 40-300x.
func TestTimingRapidResetBounded(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing test against the built binary: not under -short or -race")
	}
	var ratio float64
	for attempt := 1; attempt <= 3; attempt++ {
		if ratio = rapidResetAttempt(t); ratio <= 5 {
			return
		}
		t.Logf("attempt %d: %.1fx", attempt, ratio)
	}
	t.Errorf("legitimate p99 under attack is %.1fx its baseline, want at most 5x", ratio)
}

// rapidResetAttempt starts a fresh server (the attacker's source is penalized after an
// attack), measures, and returns the ratio of the p99s.
func rapidResetAttempt(t *testing.T) float64 {
	addr, admin := startBinary(t, "server:\n  drain: 100ms\n")
	hc := healthpb.NewHealthClient(dial(t, addr))
	legitCalls(t, hc, 300*time.Millisecond) // warm up
	base := legitCalls(t, hc, 2*time.Second)

	stop := make(chan struct{})
	var sent, closed int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent, closed = rapidReset(addr, 2, stop, 100_000_000)
	}()
	under := legitCalls(t, hc, 3*time.Second) // from the attack's first stream
	close(stop)
	<-done

	b, u := p99(base), p99(under)
	ratio := float64(u) / float64(b)
	t.Logf("legitimate p99: %v before, %v under attack (%.1fx; %d and %d calls); attacker: %d streams sent, %d connections closed by Warden",
		b, u, ratio, len(base), len(under), sent, closed)
	_, metrics := httpGet(t, "http://"+admin+"/metrics")
	m := regexp.MustCompile(`(?m)^warden_grpc_connections_closed_total\{[^}]*reason="stream_budget"[^}]*\} (\d+)`).FindStringSubmatch(metrics)
	if m == nil || m[1] == "0" {
		t.Fatalf("warden_grpc_connections_closed_total{reason=\"stream_budget\"}: got %v, want the attacker's connections counted", m)
	}
	t.Logf("warden_grpc_connections_closed_total{reason=\"stream_budget\"} %s", m[1])
	return ratio
}
