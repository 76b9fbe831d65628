package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// gcPacer raises GOGC while the process allocates fast, so that the GC runs at most about
// once per interval, and lets it back down when the allocation slows.
//
// Why: a Warden under load keeps a small live heap (4-6 MB) and allocates tens of MB per
// second, mostly gRPC's per-call structures. At Go's default GOGC of 100 the GC's goal is
// twice the live heap, so it collects 30-40 times a second, each cycle marking the whole live
// heap and every goroutine's stack: 13-20 % of the server's CPU on the Redis paths.
// A larger GOGC makes each cycle no cheaper but rarer; a fixed one would also hold an idle
// process's heap high. The pacer sizes the headroom (the goal above the live heap) from the
// allocation rate of the last cycle: rate × interval, at most maxRoom bytes, at least what
// the base GOGC gives. An idle or slowly allocating process runs at the base GOGC, exactly
// as without the pacer; a busy one spends up to maxRoom more heap to collect less often.
//
// It runs after each collection (a cleanup on an object allocated for the purpose), reads
// runtime/metrics and calls debug.SetGCPercent only when the percent changes: no goroutine,
// no timer. GOMEMLIMIT still applies above it.
type gcPacer struct {
	base     int           // the GOGC when allocating slowly
	interval time.Duration // the aimed-at time between two collections
	maxRoom  uint64        // the most headroom it gives, bytes

	mu         sync.Mutex
	stopped    bool
	samples    [4]metrics.Sample
	lastAt     time.Time
	lastAllocs uint64
	percent    int
	sets       int // SetGCPercent calls
}

const (
	paceAllocs  = "/gc/heap/allocs:bytes"
	paceLive    = "/gc/heap/live:bytes"
	paceStacks  = "/gc/scan/stack:bytes"
	paceGlobals = "/gc/scan/globals:bytes"
)

// gcPaceInterval is the time between two collections the pacer aims for under load.
const gcPaceInterval = 250 * time.Millisecond

// paceGC tells whether main paces the GC: server.gc_headroom is positive, the process's GOGC
// (gogc, after the start) is not off, and GOGC was not set in the environment (envGOGC), where
// it is the operator's choice.
func paceGC(headroom, gogc int, envGOGC string) bool {
	return headroom > 0 && gogc > 0 && envGOGC == ""
}

// startGCPacer starts pacing at base GOGC (the process's own).
func startGCPacer(base int, interval time.Duration, maxRoom uint64) *gcPacer {
	p := &gcPacer{base: base, interval: interval, maxRoom: maxRoom, percent: base}
	p.samples[0].Name, p.samples[1].Name = paceAllocs, paceLive
	p.samples[2].Name, p.samples[3].Name = paceStacks, paceGlobals
	metrics.Read(p.samples[:])
	p.lastAt, p.lastAllocs = time.Now(), p.samples[0].Value.Uint64()
	p.arm()
	return p
}

type gcSentinel struct{ _ *byte }

// arm allocates the object whose collection calls cycle.
func (p *gcPacer) arm() {
	runtime.AddCleanup(new(gcSentinel), (*gcPacer).cycle, p)
}

// stop ends the pacing and puts GOGC back to base.
func (p *gcPacer) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.percent != p.base {
		debug.SetGCPercent(p.base)
		p.percent = p.base
	}
}

// current is the GOGC the pacer last set (base if none), and how many times it set one.
func (p *gcPacer) current() (percent, sets int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.percent, p.sets
}

// cycle runs after a collection: it sets the percent for the next one and re-arms.
func (p *gcPacer) cycle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	metrics.Read(p.samples[:])
	now, allocs := time.Now(), p.samples[0].Value.Uint64()
	scan := p.samples[1].Value.Uint64() + p.samples[2].Value.Uint64() + p.samples[3].Value.Uint64()
	pct := paceFor(p.base, p.interval, p.maxRoom, now.Sub(p.lastAt), allocs-p.lastAllocs, scan)
	p.lastAt, p.lastAllocs = now, allocs
	if pct != p.percent {
		debug.SetGCPercent(pct)
		p.percent = pct
		p.sets++
	}
	p.arm()
}

// paceFor is the GOGC that gives a heap of scan bytes (live heap, stacks and globals: what
// the GC's goal is a percent of) a headroom of the bytes allocated in one interval at the
// rate of the last cycle (allocated in elapsed), at most maxRoom and never less than base
// gives. It is rounded to steps of 25 so that a steady load does not reset it every cycle.
func paceFor(base int, interval time.Duration, maxRoom uint64, elapsed time.Duration, allocated, scan uint64) int {
	if elapsed <= 0 || scan == 0 {
		return base
	}
	room := float64(allocated) * float64(interval) / float64(elapsed)
	room = min(room, float64(maxRoom))
	pct := int(room * 100 / float64(scan))
	pct -= pct % 25
	return max(pct, base)
}
