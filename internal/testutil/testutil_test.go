package testutil

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	var n atomic.Int32
	if !Poll(5*time.Second, func() bool { return n.Add(1) >= 3 }) {
		t.Fatalf("Poll: got false after %d calls, want true at the third", n.Load())
	}
	if got := n.Load(); got != 3 {
		t.Errorf("Poll called cond %d times, want 3 (it stops at the first true)", got)
	}
	start := time.Now()
	if Poll(20*time.Millisecond, func() bool { return false }) {
		t.Errorf("Poll: got true for a condition that never holds, want false")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Errorf("Poll gave up after %v, want at least 20ms", el)
	}
}

// fatalTB records Fatalf instead of stopping the goroutine.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper()                        {}
func (f *fatalTB) Fatalf(format string, _ ...any) { f.msg = format }

func TestWaitFor(t *testing.T) {
	f := &fatalTB{TB: t}
	WaitFor(f, 10*time.Millisecond, "nothing", func() bool { return false })
	if f.msg == "" {
		t.Errorf("WaitFor on a condition that never holds: no Fatalf, want one")
	}
	f.msg = ""
	WaitFor(f, time.Second, "something", func() bool { return true })
	if f.msg != "" {
		t.Errorf("WaitFor on a true condition: Fatalf %q, want none", f.msg)
	}
}
