package redistest

import (
	"bytes"
	"io"
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
				copyChunks(out, in, func(b []byte) bool {
					if bytes.Contains(bytes.ToLower(b), match) && dropped.CompareAndSwap(false, true) {
						drop.Store(true)
					}
					return true
				})
			}()
			go func() { // server → client
				defer wg.Done()
				defer in.Close()
				// Once the command ran, its reply is lost with the connection.
				copyChunks(in, out, func([]byte) bool { return !drop.Load() })
			}()
		}
	}()
	return l.Addr().String()
}

// copyChunks copies what src reads to dst, chunk by chunk, while pass accepts each chunk
// before it is written; it returns at the first refusal or error.
func copyChunks(dst io.Writer, src io.Reader, pass func([]byte) bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !pass(buf[:n]) {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
