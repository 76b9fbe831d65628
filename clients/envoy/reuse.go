package envoy

import (
	"sync"
	"sync/atomic"
	"unsafe"
)

// reused recycles the calls (C) of a server whose answers live in their call's memory
// (AuthConfig.ReuseAnswers, RateLimitConfig.ReuseAnswers): a call is handed back once Codec
// has marshalled its answer, after which the gRPC server reads nothing of it. The zero value
// is ready; it is safe for concurrent use.
//
// Between the handler's return and Codec.Marshal, a call waits in inFlight, in the slot of
// its answer's address. A call that finds its slot taken replaces the one there, which is
// then not reused but collected (an answer that was never marshalled, or a collision): the
// table holds at most its size of calls, and finding one costs an atomic load and a
// compare-and-swap, where a map would need a lock.
type reused[C any, P interface {
	*C
	answer() unsafe.Pointer // the address of the call's answer
}] struct {
	pool     sync.Pool
	inFlight [1024]atomic.Pointer[C]
}

// get returns a zero call.
func (r *reused[C, P]) get() *C {
	if c, ok := r.pool.Get().(*C); ok {
		return c
	}
	return new(C)
}

// sent registers c, whose handler answered answer, until Codec.Marshal has written it; with
// any other answer (none: an error) nothing refers to c any more, and it is handed back at
// once.
func (r *reused[C, P]) sent(c *C, answer unsafe.Pointer) {
	if answer != nil && answer == P(c).answer() {
		r.slot(answer).Store(c)
		return
	}
	r.put(c)
}

// marshalled hands back the call whose answer is at answer, if one is registered: Codec
// calls it once the answer is written. Any other answer is left alone.
func (r *reused[C, P]) marshalled(answer unsafe.Pointer) {
	s := r.slot(answer)
	if c := s.Load(); c != nil && P(c).answer() == answer && s.CompareAndSwap(c, nil) {
		r.put(c)
	}
}

// put zeroes c and hands it back.
func (r *reused[C, P]) put(c *C) {
	var zero C
	*c = zero
	r.pool.Put(c)
}

func (r *reused[C, P]) slot(answer unsafe.Pointer) *atomic.Pointer[C] {
	h := uint64(uintptr(answer)) // heap objects do not move; only hashed
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return &r.inFlight[h&(uint64(len(r.inFlight))-1)]
}
