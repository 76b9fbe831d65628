package redistest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// StartLoseReply starts a loopback proxy to addr that loses the reply to the first command
// named command (e.g. "set", "evalsha"; matched as a RESP bulk string, case-insensitive) that
// it passes: once addr has answered it (so it has run), the proxy closes the client's
// connection instead of passing the reply on, as a network that fails between a command and
// its reply does. Everything else passes both ways. It returns the proxy's address and stops
// in t.Cleanup.
func StartLoseReply(t testing.TB, addr, command string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("redistest: proxy: %v", err)
	}
	match := []byte("\r\n" + string(bytes.ToLower([]byte(command))) + "\r\n")
	var wg sync.WaitGroup
	var dropped atomic.Bool
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				_ = in.Close()
				continue
			}
			var drop atomic.Bool // this connection's next reply is lost
			wg.Add(2)
			go func() { // client → server
				defer wg.Done()
				defer out.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := in.Read(buf)
					if n > 0 {
						if bytes.Contains(bytes.ToLower(buf[:n]), match) && dropped.CompareAndSwap(false, true) {
							drop.Store(true)
						}
						if _, err := out.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // server → client
				defer wg.Done()
				defer in.Close()
				buf := make([]byte, 32<<10)
				for {
					n, err := out.Read(buf)
					if n > 0 {
						if drop.Load() {
							return // the command ran; its reply is lost with the connection
						}
						if _, err := in.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}
