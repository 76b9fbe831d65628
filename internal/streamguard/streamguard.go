// Package streamguard bounds how fast one client connection may open and reset gRPC
// streams, against HTTP/2 rapid reset (CVE-2023-44487: a client opens a stream and resets it
// at once, over and over, so that the server does the work of a request for each while the
// client does almost none). grpc-go bounds the handlers running at once per connection, not
// how fast streams come and go.
//
// A Guard gives each connection two budgets:
//   - new streams: a token bucket checked by grpc.InTapHandle (TapHandle) before a stream gets
//     a handler goroutine; a stream over it is refused at once (RESOURCE_EXHAUSTED, written by
//     the transport), and a connection refused CloseAfter streams within a second is closed;
//   - client resets: the RST_STREAM frames the client sends, counted as the connection is
//     read (before grpc-go parses them); a connection over its reset budget is closed.
//
// For Penalty after a connection is closed, the same source's new connections are closed as
// they are accepted, so that reconnecting does not buy a fresh budget. Connections it did
// not accept itself (Listener) are not limited; with TLS, wrap the server's credentials with
// Credentials so that resets are counted on the decrypted stream.
//
// It knows nothing of Warden's services: cmd/warden wraps its listeners and credentials and
// adds TapHandle to its servers' options.
package streamguard

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Config bounds the streams of one connection. The zero value takes every default.
type Config struct {
	// Rate is how many new streams per second one connection may open, sustained. Default
	// 100000: above what one busy gateway worker's connection sends (Envoy keeps one
	// connection per worker, and a worker may pass tens of thousands of requests a second),
	// since a refused stream reaches the gateway as a failure, not a decision. Open streams
	// are bounded by MaxConcurrentStreams and resets by ResetRate; Rate bounds the rest, such
	// as streams the server itself resets (HTTP/2 "MadeYouReset").
	Rate float64
	// Burst is how many it may open at once, above Rate. Default 10000.
	Burst float64
	// CloseAfter is how many refused streams within one second close the connection.
	// Default Burst.
	CloseAfter int
	// ResetRate is how many streams per second the client may reset (RST_STREAM), with
	// ResetBurst at once, before its connection is closed. Defaults 500 and ResetRate: a
	// client cancels a call when its deadline passes, rarely faster than that on one
	// connection.
	ResetRate, ResetBurst float64
	// Penalty is how long, after a connection is closed, new connections from the same
	// source address are closed as they are accepted. Default 1s (short, so that a client
	// closed for cancelling many calls while its server was slow is back soon after);
	// negative: none.
	Penalty time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Rate <= 0 {
		c.Rate = 100000
	}
	if c.Burst <= 0 {
		c.Burst = 10000
	}
	if c.CloseAfter <= 0 {
		c.CloseAfter = int(c.Burst)
	}
	if c.ResetRate <= 0 {
		c.ResetRate = 500
	}
	if c.ResetBurst <= 0 {
		c.ResetBurst = c.ResetRate
	}
	if c.Penalty == 0 {
		c.Penalty = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Stats are a Guard's counters since it was created.
type Stats struct {
	// Refused streams (over a connection's budget).
	Refused uint64
	// Closed connections: refused too many streams, or reset too many.
	Closed uint64
	// Rejected connections (closed on accept: their source was closed recently).
	Rejected uint64
}

// Guard enforces Config on the connections its listeners accept. Create it with New; it is
// safe for concurrent use.
type Guard struct {
	cfg Config

	// tls: connections are read through Credentials, which counts resets after decryption.
	tls atomic.Bool

	conns sync.Map // connKey → *guardedConn: read by every new stream of every connection

	mu        sync.RWMutex
	penalties map[netip.Addr]time.Time // source → end of its penalty

	refused, closed, rejected atomic.Uint64
}

// New returns a Guard.
func New(cfg Config) *Guard {
	cfg.setDefaults()
	return &Guard{cfg: cfg, penalties: map[netip.Addr]time.Time{}}
}

// Stats returns the counters.
func (g *Guard) Stats() Stats {
	return Stats{Refused: g.refused.Load(), Closed: g.closed.Load(), Rejected: g.rejected.Load()}
}

// connKey names a connection the way a stream's peer.Peer does: both ends.
type connKey struct{ remote, local netip.AddrPort }

func keyOf(remote, local net.Addr) (connKey, bool) {
	r, ok1 := remote.(*net.TCPAddr)
	l, ok2 := local.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return connKey{}, false
	}
	return connKey{r.AddrPort(), l.AddrPort()}, true
}

// ErrRefused is the status of a refused stream.
var ErrRefused = status.Error(codes.ResourceExhausted, "too many new streams on this connection")

// TapHandle is a grpc.InTapHandle: it admits a new stream if its connection has budget left,
// and refuses it otherwise (closing a connection refused too often). It does not allocate.
func (g *Guard) TapHandle(ctx context.Context, _ *tap.Info) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ctx, nil
	}
	k, ok := keyOf(p.Addr, p.LocalAddr)
	if !ok {
		return ctx, nil
	}
	v, ok := g.conns.Load(k)
	if !ok {
		return ctx, nil
	}
	c := v.(*guardedConn)
	if c.admit(g.cfg.Now(), &g.cfg) {
		return ctx, nil
	}
	g.refused.Add(1)
	if c.shouldClose(&g.cfg) {
		g.closeForAbuse(c)
	}
	return nil, ErrRefused
}

// closeForAbuse closes c (once) and penalizes its source.
func (g *Guard) closeForAbuse(c *guardedConn) {
	if !c.abusive.CompareAndSwap(false, true) {
		return
	}
	g.closed.Add(1)
	if g.cfg.Penalty > 0 {
		until := g.cfg.Now().Add(g.cfg.Penalty)
		g.mu.Lock()
		if len(g.penalties) >= 1024 {
			now := g.cfg.Now()
			for a, t := range g.penalties {
				if !now.Before(t) {
					delete(g.penalties, a)
				}
			}
		}
		g.penalties[c.key.remote.Addr()] = until
		g.mu.Unlock()
	}
	_ = c.Close()
}

// penalized reports whether connections from a are closed on accept now.
func (g *Guard) penalized(a netip.Addr) bool {
	g.mu.RLock()
	until, ok := g.penalties[a]
	g.mu.RUnlock()
	return ok && g.cfg.Now().Before(until)
}

// Listener wraps l: the connections it accepts are guarded.
func (g *Guard) Listener(l net.Listener) net.Listener { return &listener{Listener: l, g: g} }

type listener struct {
	net.Listener
	g *Guard
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		k, ok := keyOf(c.RemoteAddr(), c.LocalAddr())
		if !ok {
			return c, nil
		}
		if l.g.penalized(k.remote.Addr()) {
			l.g.rejected.Add(1)
			_ = c.Close()
			continue
		}
		now := l.g.cfg.Now()
		gc := &guardedConn{Conn: c, g: l.g, key: k, tokens: l.g.cfg.Burst, last: now,
			resets: resetBudget{tokens: l.g.cfg.ResetBurst, last: now}, frames: frameScanner{preface: len(clientPreface)}}
		if l.g.tls.Load() {
			gc.frames.off = true // read encrypted: Credentials counts
		}
		l.g.conns.Store(k, gc)
		return gc, nil
	}
}

// guardedConn is an accepted connection and its budget.
type guardedConn struct {
	net.Conn
	g   *Guard
	key connKey

	mu       sync.Mutex
	tokens   float64
	last     time.Time // of the last refill
	window   time.Time // start of the refusals' one-second window
	refusals int

	// frames and resets are used by the goroutine reading the connection only.
	frames frameScanner
	resets resetBudget

	abusive   atomic.Bool
	closeOnce sync.Once
}

// Read counts the client's resets in what it reads; a connection over its reset budget is
// closed.
func (c *guardedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.frames.off {
		if c.countResets(p[:n]) {
			return 0, net.ErrClosed
		}
	}
	return n, err
}

// countResets scans p (the connection's plaintext) and reports whether the connection was
// closed for resetting too many streams.
func (c *guardedConn) countResets(p []byte) bool {
	if r := c.frames.scan(p); r > 0 && !c.resets.take(r, c.g.cfg.Now(), &c.g.cfg) {
		c.g.closeForAbuse(c)
		return true
	}
	return false
}

// resetBudget is a token bucket of client resets.
type resetBudget struct {
	tokens float64
	last   time.Time
}

// take spends n tokens at now; false when the budget is exhausted.
func (b *resetBudget) take(n int, now time.Time, cfg *Config) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(cfg.ResetBurst, b.tokens+d.Seconds()*cfg.ResetRate)
		b.last = now
	}
	b.tokens -= float64(n)
	return b.tokens >= 0
}

// clientPreface starts every HTTP/2 connection (RFC 9113 3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// frameScanner follows the frames of an HTTP/2 connection's client side, byte stream in
// arbitrary pieces, reading only the 9-byte frame headers (RFC 9113 4.1).
type frameScanner struct {
	off     bool
	preface int     // bytes of the preface still to skip
	hdr     [9]byte // a frame header read in part
	nhdr    int
	skip    int // payload bytes still to skip
}

// frameRSTStream is RST_STREAM's frame type.
const frameRSTStream = 0x3

// scan consumes p and returns how many RST_STREAM frames began in it.
func (f *frameScanner) scan(p []byte) (resets int) {
	for len(p) > 0 {
		switch {
		case f.preface > 0:
			n := min(f.preface, len(p))
			f.preface -= n
			p = p[n:]
		case f.skip > 0:
			n := min(f.skip, len(p))
			f.skip -= n
			p = p[n:]
		default:
			n := copy(f.hdr[f.nhdr:], p)
			f.nhdr += n
			p = p[n:]
			if f.nhdr < len(f.hdr) {
				return resets
			}
			f.nhdr = 0
			f.skip = int(f.hdr[0])<<16 | int(f.hdr[1])<<8 | int(f.hdr[2])
			if f.hdr[3] == frameRSTStream {
				resets++
			}
		}
	}
	return resets
}

// admit takes a token for a new stream at now, if there is one.
func (c *guardedConn) admit(now time.Time, cfg *Config) bool {
	if c.abusive.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := now.Sub(c.last); d > 0 {
		c.tokens = min(cfg.Burst, c.tokens+d.Seconds()*cfg.Rate)
		c.last = now
	}
	if c.tokens >= 1 {
		c.tokens--
		return true
	}
	if now.Sub(c.window) >= time.Second {
		c.window, c.refusals = now, 0
	}
	c.refusals++
	return false
}

// shouldClose reports whether c was refused CloseAfter streams within its window.
func (c *guardedConn) shouldClose(cfg *Config) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refusals >= cfg.CloseAfter
}

// Credentials wraps a server's TLS credentials so that the client's resets are counted on
// the decrypted stream. Connections the Guard's listeners accept are then not scanned
// themselves (they carry TLS records). Call it before serving.
func (g *Guard) Credentials(c credentials.TransportCredentials) credentials.TransportCredentials {
	g.tls.Store(true)
	return &guardedCreds{TransportCredentials: c, g: g}
}

type guardedCreds struct {
	credentials.TransportCredentials
	g *Guard
}

func (c *guardedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	gc, ok := raw.(*guardedConn)
	if !ok {
		return conn, info, nil
	}
	return &decryptedConn{Conn: conn, gc: gc}, info, nil
}

func (c *guardedCreds) Clone() credentials.TransportCredentials {
	return &guardedCreds{TransportCredentials: c.TransportCredentials.Clone(), g: c.g}
}

// decryptedConn is a TLS connection whose plaintext is counted for its guardedConn.
type decryptedConn struct {
	net.Conn
	gc *guardedConn
}

func (c *decryptedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.gc.countResets(p[:n]) {
		return 0, net.ErrClosed
	}
	return n, err
}

// Close closes the connection and forgets it.
func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.g.conns.CompareAndDelete(c.key, c) })
	return err
}
