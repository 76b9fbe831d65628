package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPaceFor(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name      string
		elapsed   time.Duration
		allocated uint64
		scan      uint64
		want      int
	}{
		{"idle: base", 2 * time.Minute, 1 << 20, 4 << 20, 100},
		{"slow: base", 1000 * ms, 8 << 20, 4 << 20, 100},                  // 2 MiB a quarter second < 4 MiB
		{"fast: a quarter second of it", 100 * ms, 4 << 20, 4 << 20, 250}, // 10 MiB over 4
		{"faster: capped at max room", 100 * ms, 64 << 20, 4 << 20, 400},  // 16 MiB over 4
		{"rounded down to 25", 100 * ms, 4 << 20, 3 << 20, 325},           // 333
		{"large live heap: base", 100 * ms, 64 << 20, 400 << 20, 100},
		{"no time: base", 0, 64 << 20, 4 << 20, 100},
		{"no scan: base", 100 * ms, 64 << 20, 0, 100},
	} {
		if got := paceFor(100, 250*ms, 16<<20, c.elapsed, c.allocated, c.scan); got != c.want {
			t.Errorf("%s: paceFor = %d, want %d", c.name, got, c.want)
		}
	}
	if got := paceFor(200, 250*ms, 16<<20, 100*ms, 4<<20, 4<<20); got != 250 {
		t.Errorf("base 200, room for 250: %d", got)
	}
	if got := paceFor(300, 250*ms, 16<<20, 100*ms, 4<<20, 4<<20); got != 300 {
		t.Errorf("never below base 300: %d", got)
	}
}

func TestPaceGC(t *testing.T) {
	for _, c := range []struct {
		headroom, gogc int
		env            string
		want           bool
	}{
		{16 << 20, 100, "", true},
		{16 << 20, 100, "100", false}, // GOGC set by the operator
		{16 << 20, -1, "", false},     // GOGC off (debug.SetGCPercent)
		{-1, 100, "", false},          // server.gc_headroom: -1
	} {
		if got := paceGC(c.headroom, c.gogc, c.env); got != c.want {
			t.Errorf("paceGC(%d, %d, %q) = %v, want %v", c.headroom, c.gogc, c.env, got, c.want)
		}
	}
}

var paceSink []byte

// allocate allocates n bytes in blocks of 4 KiB as fast as it can and returns the GC cycles
// completed meanwhile.
func allocate(n int) uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	before := s[0].Value.Uint64()
	for range n / 4096 {
		paceSink = make([]byte, 4096)
	}
	metrics.Read(s)
	return s[0].Value.Uint64() - before
}

// TestGCPacer runs the pacer on this process: allocating fast raises GOGC and makes the
// collections rarer per byte allocated, allocating nothing brings it back to base, and stop
// restores it.
func TestGCPacer(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	runtime.GC()

	// The room is four times what GOGC 100 gives this process's heap (whatever the tests
	// before left live in it), so that the paced GOGC is well above 100.
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: paceLive}, {Name: paceStacks}, {Name: paceGlobals}}
	metrics.Read(s)
	room := 4*(s[1].Value.Uint64()+s[2].Value.Uint64()+s[3].Value.Uint64()) + 16<<20
	total := int(16 * room)
	without := allocate(total)

	p := startGCPacer(100, 250*time.Millisecond, room)
	defer p.stop()
	// The first cycles measure the rate; then GOGC goes up.
	deadline := time.Now().Add(10 * time.Second)
	for pct, _ := p.current(); pct == 100; pct, _ = p.current() {
		if time.Now().After(deadline) {
			t.Fatal("GOGC still 100 after 10 s of allocating")
		}
		allocate(int(room))
	}
	with := allocate(total)
	pct, _ := p.current()
	t.Logf("GOGC %d; collections per %d MiB allocated: %d at GOGC 100, %d paced", pct, total>>20, without, with)
	if with*2 > without {
		t.Errorf("paced: %d collections for %d MiB, not half of the %d without", with, total>>20, without)
	}
	metrics.Read(s)
	if goal, live := s[0].Value.Uint64(), s[1].Value.Uint64(); goal > 2*live+room+8<<20 {
		t.Errorf("heap goal %d MiB with %d MiB live: more than the %d MiB of room and GOGC 100's", goal>>20, live>>20, room>>20)
	}

	// Nothing allocated: the next cycles bring GOGC back to 100.
	deadline = time.Now().Add(10 * time.Second)
	for pct, _ := p.current(); pct != 100; pct, _ = p.current() {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC still %d after 10 s of idle collections", pct)
		}
		time.Sleep(100 * time.Millisecond)
		runtime.GC()
	}

	allocate(int(4 * room))
	p.stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after stop: GOGC %d, want 100", got)
	}
	_, sets := p.current()
	runtime.GC()
	time.Sleep(50 * time.Millisecond)
	runtime.GC()
	if _, after := p.current(); after != sets {
		t.Errorf("the pacer set GOGC after stop (%d times)", after-sets)
	}
}
