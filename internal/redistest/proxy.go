package redistest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port in front of a server, that holds every chunk of
// bytes sent toward the server for a fixed delay before passing it on (answers come back
// undelayed). Chunks keep their order and are delayed independently, as on a network link
// with that one-way latency: a pipelining client keeps many requests in flight through it.
// While nothing listens at the server's address, it accepts and closes, as a load balancer in
// front of a dead backend does. It stops in t.Cleanup.
type Proxy struct {
	l     net.Listener
	delay atomic.Int64 // time.Duration
	to    string

	mu     sync.Mutex
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

// StartProxy starts a Proxy to addr that delays what is sent toward addr by delay.
func StartProxy(t testing.TB, addr string, delay time.Duration) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	p := &Proxy{l: l, to: addr}
	p.delay.Store(int64(delay))
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// SetDelay changes the delay of the chunks read from now on.
func (p *Proxy) SetDelay(d time.Duration) { p.delay.Store(int64(d)) }

func (p *Proxy) close() {
	_ = p.l.Close()
	p.mu.Lock()
	p.closed = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track remembers c to close it at the end, or closes it at once if the proxy is closing.
func (p *Proxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = c.Close()
		return
	}
	p.conns = append(p.conns, c)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.to)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.track(in)
		p.track(out)
		type chunk struct {
			at time.Time
			b  []byte
		}
		q := make(chan chunk, 4096)
		p.wg.Add(3)
		go func() { // toward the server: read and stamp
			defer p.wg.Done()
			defer close(q)
			buf := make([]byte, 32<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					q <- chunk{time.Now().Add(time.Duration(p.delay.Load())), append([]byte(nil), buf[:n]...)}
				}
				if err != nil {
					return
				}
			}
		}()
		go func() { // toward the server: hold each chunk until its time
			defer p.wg.Done()
			defer out.Close()
			for c := range q {
				if d := time.Until(c.at); d > 0 {
					time.Sleep(d)
				}
				if _, err := out.Write(c.b); err != nil {
					_ = in.Close()
					for range q { // drain, so the reader can finish
					}
					return
				}
			}
		}()
		go func() { // back to the client, undelayed
			defer p.wg.Done()
			_, _ = io.Copy(in, out)
			_ = in.Close()
		}()
	}
}
