package redisstore

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Observer is told of every round trip the Store makes to Redis: each pipeline (batched, on a
// single node or one Cluster master, including the resends after MOVED or NOSCRIPT) and each
// unbatched Take's command. takes is the number of Takes it carried (the batch size) and
// scripts the number of script calls (EVALSHA or EVAL) they went in: a batcher sends the
// Takes of its batch in as few script calls as it may (one per Cluster slot, at most 64
// Takes each), so takes/scripts is the Takes per script call. It is called from the
// goroutine that made the round trip, once the answer is in: it must be quick and must not
// block.
type Observer interface {
	RoundTrip(takes, scripts int, took time.Duration)
}

// TakeObserver, when the Options.Observer also implements it, is told of every batched Take
// that a pipeline answered: the Take's ctx and the number of Takes in that pipeline (for a
// span of the Take). It is called from the Take's goroutine before Take returns: it must be
// quick and must not block.
type TakeObserver interface {
	TakeAnswered(ctx context.Context, batch int)
}

// Stats are a Store's round-trip counts since New, read with atomic loads.
type Stats struct {
	InFlight   int64  // round trips sent and not yet answered
	RoundTrips uint64 // round trips answered (or failed)
	Takes      uint64 // Takes in them: Takes/RoundTrips is the mean batch size
	Scripts    uint64 // script calls in them: Takes/Scripts is the mean Takes per script call
	// Holds counts the batches whose collector held for more calls, with pipelines in
	// flight (see Options.Pipelines): Holds/RoundTrips is the share of round trips that
	// waited for others (up to 50 µs), none when Takes come one at a time.
	Holds uint64
	// Direct counts the round trips that a Take's own goroutine sent, with no batcher in
	// between: a Take that finds nothing queued and no pipeline in flight has nothing to
	// share its round trip with, so it is sent at once, alone (see Options.Pipelines).
	Direct uint64
}

// rtStats is the Store's share of Stats.
type rtStats struct {
	inFlight   atomic.Int64
	roundTrips atomic.Uint64
	takes      atomic.Uint64
	scripts    atomic.Uint64
	holds      atomic.Uint64 // batches whose collector held for more calls (see batcher)
	direct     atomic.Uint64 // round trips sent by the Take's goroutine (see gate.claim)
}

// Stats returns the Store's round-trip counts. It is cheap: six atomic loads.
func (s *Store) Stats() Stats {
	return Stats{InFlight: s.rt.inFlight.Load(), RoundTrips: s.rt.roundTrips.Load(), Takes: s.rt.takes.Load(),
		Scripts: s.rt.scripts.Load(), Holds: s.rt.holds.Load(), Direct: s.rt.direct.Load()}
}

// rtBegin counts a round trip going out; rtDone, with rtBegin's result, counts it answered.
func (s *Store) rtBegin() time.Time {
	s.rt.inFlight.Add(1)
	return time.Now()
}

func (s *Store) rtDone(takes, scripts int, start time.Time) {
	took := time.Since(start)
	s.rt.inFlight.Add(-1)
	s.rt.roundTrips.Add(1)
	s.rt.takes.Add(uint64(takes))
	s.rt.scripts.Add(uint64(scripts))
	if s.opts.Observer != nil {
		s.opts.Observer.RoundTrip(takes, scripts, took)
	}
}

// execPipe sends pipe (of script calls carrying takes Takes) as one round trip, counted.
func (s *Store) execPipe(ctx context.Context, pipe redis.Pipeliner, takes int) {
	n := pipe.Len()
	start := s.rtBegin()
	_, _ = pipe.Exec(ctx)
	s.rtDone(takes, n, start)
}
