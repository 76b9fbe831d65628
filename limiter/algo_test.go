package limiter

import (
	"testing"
	"time"
)

func TestValidateBounds(t *testing.T) {
	for _, tc := range []struct {
		name string
		l    Limit
		ok   bool
	}{
		{"a million a day, token bucket", Limit{Algorithm: TokenBucket, Limit: 1_000_000, Period: 24 * time.Hour}, true},
		{"a billion a day, sliding window", Limit{Algorithm: SlidingWindow, Limit: 1_000_000_000, Period: 24 * time.Hour}, true},
		{"a prime rate a day with a huge burst", Limit{Algorithm: TokenBucket, Limit: 999_983, Period: 24 * time.Hour, Burst: 100_000_000}, false},
		{"sliding log at its cap", Limit{Algorithm: SlidingLog, Limit: MaxLogLimit, Period: time.Hour}, true},
		{"sliding log above its cap", Limit{Algorithm: SlidingLog, Limit: MaxLogLimit + 1, Period: time.Hour}, false},
		{"sub-microsecond period", Limit{Algorithm: FixedWindow, Limit: 1, Period: time.Nanosecond}, false},
		{"zero limit", Limit{Algorithm: FixedWindow, Period: time.Second}, false},
		{"unknown algorithm", Limit{Algorithm: 9, Limit: 1, Period: time.Second}, false},
	} {
		if err := tc.l.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// FuzzAlgorithms drives one counter with fuzzed limits and steps and checks, at every step,
// the properties every store relies on: peeks change nothing; Remaining stays within the
// quota; RetryAfter is zero exactly when allowed; a refused cost is still refused a
// microsecond before RetryAfter and allowed at it; the counter is full at ResetAfter and not
// before.
func FuzzAlgorithms(f *testing.F) {
	f.Add(uint8(0), uint16(10), uint32(1_000_000), uint16(0), []byte{1, 5, 3, 200, 9, 0, 4})
	f.Add(uint8(1), uint16(7), uint32(30_000_000), uint16(0), []byte{3, 3, 3, 3, 250, 1, 7})
	f.Add(uint8(2), uint16(3), uint32(999_999), uint16(0), []byte{1, 1, 1, 1, 255, 2})
	f.Add(uint8(3), uint16(5), uint32(3_600_000_000), uint16(0), []byte{2, 2, 2, 128, 2, 64, 2})
	f.Add(uint8(0), uint16(3), uint32(7), uint16(11), []byte{11, 1, 1, 9, 0})
	f.Fuzz(func(t *testing.T, alg uint8, limit uint16, periodUS uint32, burst uint16, steps []byte) {
		l := Limit{Algorithm: Algorithm(alg % 4), Limit: int64(limit%1000) + 1, Period: time.Duration(periodUS%(1<<31)+1) * time.Microsecond, Burst: int64(burst)}
		if l.Validate() != nil {
			return
		}
		p := l.Params()
		quota := p.Burst
		var c Counter
		now := int64(1_893_456_000_000_000) // 2030-01-01 in µs
		for i := 0; i+1 < len(steps) && i < 200; i += 2 {
			now += int64(steps[i]) * p.Period / 97
			cost := int64(steps[i+1] % 8)
			before := snapshot(c)
			peek := p.Eval(&c, now, 0)
			if snapshot(c) != before {
				t.Fatalf("step %d: Eval changed the counter", i)
			}
			if peek.Remaining < 0 || peek.Remaining > quota || peek.RetryAfter != 0 || !peek.Allowed {
				t.Fatalf("step %d: peek %+v out of bounds (quota %d)", i, peek, quota)
			}
			if peek.ResetAfter > 0 {
				at := now + int64(peek.ResetAfter/time.Microsecond)
				if s := p.Eval(&c, at, 0); s.Remaining != quota || s.ResetAfter != 0 {
					t.Fatalf("step %d: at ResetAfter %v: %+v, want full", i, peek.ResetAfter, s)
				}
				if s := p.Eval(&c, at-1, 0); s.Remaining == quota && s.ResetAfter == 0 {
					t.Fatalf("step %d: full 1µs before ResetAfter %v", i, peek.ResetAfter)
				}
			} else if peek.Remaining != quota {
				t.Fatalf("step %d: no ResetAfter but remaining %d of %d", i, peek.Remaining, quota)
			}
			s := p.Eval(&c, now, cost)
			if s.Allowed != (s.RetryAfter == 0) {
				t.Fatalf("step %d: %+v: RetryAfter must be zero exactly when allowed", i, s)
			}
			if s.Allowed {
				if s.Remaining != peek.Remaining-cost && l.Algorithm != SlidingWindow {
					t.Fatalf("step %d: took %d from %d remaining, %d left", i, cost, peek.Remaining, s.Remaining)
				}
				p.Commit(&c, now, cost)
				continue
			}
			if cost > quota {
				if s.RetryAfter < l.Period {
					t.Fatalf("step %d: impossible cost %d of %d: retry %v below the period", i, cost, quota, s.RetryAfter)
				}
				continue
			}
			at := now + int64(s.RetryAfter/time.Microsecond)
			if p.Eval(&c, at-1, cost).Allowed {
				t.Fatalf("step %d: cost %d allowed 1µs before RetryAfter %v", i, cost, s.RetryAfter)
			}
			if !p.Eval(&c, at, cost).Allowed {
				t.Fatalf("step %d: cost %d refused at RetryAfter %v", i, cost, s.RetryAfter)
			}
		}
	})
}

type counterSnapshot struct {
	at, n  int64
	logLen int
	logSum int64
	last   int64
}

func snapshot(c Counter) counterSnapshot {
	s := counterSnapshot{at: c.At, n: c.N, logLen: len(c.Log)}
	for i, v := range c.Log {
		s.logSum += int64(i+1) * v
	}
	if len(c.Log) > 0 {
		s.last = c.Log[len(c.Log)-1]
	}
	return s
}
