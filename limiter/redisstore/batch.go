package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/limiter"
)

// States of a call, switched once by compare-and-swap: whoever moves it out of pending decides
// who recycles it. The batcher answers (pending → answered, then the caller recycles); a caller
// whose ctx ended gives up (pending → abandoned, then the batcher recycles when done with it).
const (
	pending int32 = iota
	answered
	abandoned
)

// call is one Take on its way through the batcher. It is pooled: its buffers and its done
// channel are reused, so a Take allocates only the string of its keys. The batcher never
// touches the caller's hits or out: everything it needs is copied into keys and specs.
type call struct {
	ctx      context.Context
	deadline time.Time // the Take's deadline; zero: Options.Timeout only
	tag      string    // the Take's hash tag (its Takes grouped by tag on a Ring)
	slot     int       // the Cluster slot of its keys (batched on a Cluster only)
	keybuf   []byte
	keys     []string
	specs    []spec     // each hit's values (see spec)
	now      string     // ARGV[1]: "" (Redis's TIME), or a test's Options.Now in µs
	minTTL   int64      // ARGV[2]
	one      scriptArgs // the Take as a script call of its own (Options.Unbatched)
	reply    []int64    // the Take's 1 + 4·len(hits) values of its script call's reply
	err      error
	state    atomic.Int32
	sent     atomic.Bool   // the command has left the queue for Redis
	done     chan struct{} // capacity 1: the batcher's answer
	batch    int32         // Takes in the round trip that answered it (0: none did)
}

// spec is what the script needs of a hit but its key: algorithm, cost, P, L, x, y (see
// take.lua). The hits of a batch mostly share a few specs, which a script call sends once.
type spec [6]int64

// build fills c.keys, c.specs and the clock for hits under tag.
func (c *call) build(s *Store, tag string, hits []limiter.Hit) error {
	c.keybuf = c.keybuf[:0]
	c.specs = c.specs[:0]
	for _, h := range hits {
		if err := h.Limit.Validate(); err != nil {
			return fmt.Errorf("redisstore: limit %q: %w", h.Limit.Name, err)
		}
		if h.Cost < 0 {
			return fmt.Errorf("redisstore: limit %q: negative cost %d", h.Limit.Name, h.Cost)
		}
		c.keybuf = s.appendName(c.keybuf, tag, h.Key)
		p := h.Limit.Params()
		x, y := p.Granule, p.Granules
		l := p.Limit
		if p.Algorithm == limiter.TokenBucket {
			x, y, l = p.UnitTicks, p.MicroTicks, p.Burst
		}
		c.specs = append(c.specs, spec{int64(p.Algorithm), h.Cost, p.Period, l, x, y})
	}
	all := string(c.keybuf) // one allocation for every key of the Take
	c.tag = tag
	c.keys = c.keys[:0]
	n := len(all) / len(hits) // the names of one tag have one length
	for i := range hits {
		c.keys = append(c.keys, all[i*n:(i+1)*n])
	}
	c.now, c.minTTL = "", 1
	if s.opts.Now != nil {
		c.now, c.minTTL = strconv.FormatInt(s.opts.Now().UnixMicro(), 10), testMinTTL
	}
	return nil
}

// scriptArgs is the arguments of one script call ("evalsha", sha, the number of keys, the
// keys, then ARGV: see take.lua), and the numbers behind them. The keys and the numbers are
// there as pointers (*string, *int64, into the calls' keys and into specs and takes), which
// go-redis writes as their values: a value put in an any would be an allocation of its own,
// one per key and per number above 255. Its buffers are reused from one call to the next.
type scriptArgs struct {
	args  []any
	specs []int64 // the number S of distinct specs, then each spec's 6 values
	takes []int64 // each Take: its spec's index (one hit), or -h and its h hits' indexes
}

// build fills a.args with the script call of calls (on one clock) and returns them.
func (a *scriptArgs) build(sha *string, calls []*call) []any {
	a.specs = append(a.specs[:0], 0)
	a.takes = a.takes[:0]
	nkeys := 0
	for _, c := range calls {
		nkeys += len(c.keys)
		if len(c.specs) > 1 {
			a.takes = append(a.takes, -int64(len(c.specs)))
		}
		for _, sp := range c.specs {
			a.takes = append(a.takes, a.index(sp))
		}
	}
	a.specs[0] = int64(len(a.specs) / len(spec{})) // (1 + 6S) / 6
	// specs and takes are complete: pointers into them stay valid until the next build.
	a.args = append(a.args[:0], "evalsha", sha, nkeys)
	for _, c := range calls {
		for i := range c.keys {
			a.args = append(a.args, &c.keys[i])
		}
	}
	first := calls[0]
	a.args = append(a.args, first.now, &first.minTTL)
	for i := range a.specs {
		a.args = append(a.args, &a.specs[i])
	}
	for i := range a.takes {
		a.args = append(a.args, &a.takes[i])
	}
	return a.args
}

// index returns the index (from 1) of sp in a.specs, added if it is not there yet. A batch
// has few distinct specs (one per limit and cost), so a scan is fast.
func (a *scriptArgs) index(sp spec) int64 {
	const w = len(spec{})
	for i := 1; i < len(a.specs); i += w {
		if spec(a.specs[i:i+w]) == sp {
			return int64(i/w + 1)
		}
	}
	a.specs = append(a.specs, sp[:]...)
	return int64(len(a.specs) / w)
}

// reset drops a's arguments, keeping its buffers.
func (a *scriptArgs) reset() {
	clear(a.args)
	a.args = a.args[:0]
}

func (s *Store) recycle(c *call) {
	c.ctx, c.reply, c.err, c.deadline, c.tag = nil, nil, nil, time.Time{}, ""
	c.one.reset()
	clear(c.keys)
	c.sent.Store(false)
	c.state.Store(pending)
	s.pool.Put(c)
}

// deliver hands c's answer to its caller, or recycles c if the caller gave up.
func (s *Store) deliver(c *call) {
	if c.state.CompareAndSwap(pending, answered) {
		c.done <- struct{}{}
		return
	}
	s.recycle(c)
}

// Limits of one script call: a batch of more Takes (or of Takes with more hits in all) is sent
// as several calls in one pipeline, so that one call does not hold Redis for long.
const (
	maxScriptTakes = 64
	maxScriptKeys  = 256
)

// grouping says which Takes one script call may carry.
type grouping int

const (
	groupAll  grouping = iota // one server (a *redis.Client, also through Sentinel): any Takes
	groupSlot                 // a Cluster master: Takes of one slot (Redis refuses CROSSSLOT)
	groupTag                  // another client (a Ring routes a command by its first key): one tag
)

// scriptCall is one EVALSHA of several Takes (see take.lua). Its args are reused from one
// batch to the next.
type scriptCall struct {
	cmd   *redis.IntSliceCmd
	args  scriptArgs
	calls []*call
	keys  int
}

// fits reports whether c may join sc.
func (sc *scriptCall) fits(c *call, g grouping) bool {
	if len(sc.calls) >= maxScriptTakes || sc.keys+len(c.keys) > maxScriptKeys {
		return false
	}
	first := sc.calls[0]
	switch {
	case g == groupSlot && c.slot != first.slot, g == groupTag && c.tag != first.tag:
		return false
	}
	return c.now == first.now // only a test's Options.Now makes them differ
}

// build fills sc.args from its calls and returns its command, on ctx.
func (sc *scriptCall) build(ctx context.Context, sha *string) *redis.IntSliceCmd {
	sc.cmd = scriptCmd(ctx, sc.args.build(sha, sc.calls))
	return sc.cmd
}

// scriptCmd is the script call of args ("evalsha" or "eval", …). Its reply is read as the
// integers that take.lua returns, into one []int64: read as a []any, each integer above 255
// would be an allocation of its own.
func scriptCmd(ctx context.Context, args []any) *redis.IntSliceCmd {
	cmd := redis.NewIntSliceCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

// answer gives each of sc's calls its part of the reply, or the call's error.
func (sc *scriptCall) answer() {
	err := sc.cmd.Err()
	var reply []int64
	if err == nil {
		reply = sc.cmd.Val()
		want := 0
		for _, c := range sc.calls {
			want += 1 + 4*len(c.keys)
		}
		if len(reply) != want {
			err = fmt.Errorf("unexpected script reply of %d values, want %d", len(reply), want)
		}
	}
	off := 0
	for _, c := range sc.calls {
		if c.err = err; err == nil {
			n := 1 + 4*len(c.keys)
			c.reply = reply[off : off+n : off+n]
			off += n
		}
	}
}

// busyPipelines is the number of pipelines in flight on one queue (one answered by Redis,
// one waiting behind it) from which the collector does not send a batch smaller than a full
// script call at once: it holds, taking the calls that arrive, until a pipeline comes back,
// the batch is full or holdTime has passed. Redis stays busy meanwhile, and the calls that
// arrive share one script call instead of going out one or two at a time.
const busyPipelines = 2

// holdTime bounds the collector's hold. The callers of a returning pipeline queue their next
// calls within microseconds, so a short hold gathers them; a long one adds itself to every
// call's time once Redis is far (pipelines always in flight). Measured on a shared 2-core
// machine: with 50 callers through a proxy 2 ms from Redis (TestTimingPipeliningHidesLatency),
// 50 µs gave 13.4–14.3k calls/s, 100 µs 12.9–13.8k, 200 µs 8.5–12.5k (no gate: 9.3–11.8k);
// with a local Redis (BenchmarkTake, 128 callers), Takes per script call rose from 5–6
// without the gate to 10–12 at 25 µs, 18–22 at 50 µs, 23–29 at 100 µs. A hold derived from
// the round trip would grow with a far Redis, where a long hold costs most: it is fixed.
const holdTime = 50 * time.Microsecond

// gate is what the batchers of one queue share: which of them takes calls from the queue
// (the collector, holding collect), the number of pipelines in flight (the batchers' and a
// direct send's, at most slots), a token per pipeline come back (for a holding collector or
// one waiting for a slot), and the batch state of a direct send (held by send).
type gate struct {
	collect  sync.Mutex
	inFlight atomic.Int32
	slots    int32         // Options.Pipelines
	done     chan struct{} // capacity Options.Pipelines
	send     sync.Mutex    // held by the caller that sends its Take itself (see claim)
	one      batchState    // that caller's batch
	lone     atomic.Bool   // the last pipeline sent carried one Take
}

func newGate(pipelines int, group grouping) *gate {
	g := &gate{slots: int32(pipelines), done: make(chan struct{}, pipelines), one: batchState{group: group}}
	g.lone.Store(true)
	return g
}

// claim reports whether the caller of a Take for g's queue reqs sends it itself, at once,
// from its own goroutine: when nothing is queued, no pipeline is in flight and the last one
// carried a single Take (load is low), no batch is forming that the Take could join, and
// handing it to a batcher would only cost a switch of goroutines (and the collector's
// yield) before the same lone script call. It then counts that pipeline in flight, so that
// the Takes that come meanwhile queue and are batched as usual, and the caller holds g.send
// until its pipeline is back (see Store.sendAlone). Under load, the last pipeline carried
// several Takes: a Take that finds none in flight goes to the collector, whose yield lets
// the callers already runnable join it.
func (g *gate) claim(reqs chan *call) bool {
	if len(reqs) != 0 || g.inFlight.Load() != 0 || !g.lone.Load() || !g.send.TryLock() {
		return false
	}
	if g.inFlight.CompareAndSwap(0, 1) {
		return true
	}
	g.send.Unlock()
	return false
}

// acquire counts a batcher's pipeline in flight, once one of g's slots is free: a direct
// send (claim) may hold one, so that no more than Options.Pipelines are ever in flight.
func (g *gate) acquire() {
	for g.inFlight.Add(1) > g.slots {
		g.inFlight.Add(-1)
		<-g.done // a pipeline came back (or a token of an earlier one: look again)
	}
}

// landed counts a pipeline of g (nil: none) out of flight, before its calls are answered: a
// caller that takes again at once does not find its own answered pipeline still counted.
func (g *gate) landed() {
	if g != nil {
		g.inFlight.Add(-1)
	}
}

// returned tells a holding collector, or one waiting for a slot, that a pipeline is back.
func (g *gate) returned() {
	select {
	case g.done <- struct{}{}:
	default:
	}
}

// groupOf says which Takes may share a script call on client (n: the Cluster master it
// speaks to, nil if none).
func groupOf(client Client, n *node) grouping {
	if n != nil {
		return groupSlot
	}
	if _, ok := client.(*redis.Client); ok {
		return groupAll
	}
	return groupTag
}

// sendAlone sends c, alone, from the caller's goroutine on the pipeline slot of g that claim
// took (n: the Cluster master of g's queue, nil if none), exactly as a batcher sends a batch
// of one, and answers it in c.done.
func (s *Store) sendAlone(c *call, n *node, g *gate) {
	defer s.workers.Done()
	client := s.client
	if n != nil {
		client = n.client.Load()
	}
	b := &g.one
	b.calls = append(b.calls[:0], c)
	s.rt.direct.Add(1)
	s.exec(b, client, n, g)
	clear(b.calls)
	g.send.Unlock()
	g.returned()
}

// batcher is one of Options.Pipelines goroutines sharing the queue reqs (the store's, or one
// Cluster master's) and its gate g. One at a time, the collector, waits for a call, yields
// once (runtime.Gosched, with fewer than busyPipelines in flight) so that the goroutines
// already runnable queue their calls first, and takes whatever is then queued (up to
// MaxBatch) without waiting. With fewer than
// busyPipelines pipelines in flight, it sends the batch at once: a lone call never waits.
// With more, it holds: it keeps taking calls until a pipeline comes back, the batch fills a
// script call or holdTime has passed (one timer per batcher, reused). Once a slot is free
// (a Take sent by its own caller may hold one, see gate.claim), it sends the batch as one
// pipeline of script calls, on client or, for a Cluster master, on n's client, and another
// batcher becomes the collector meanwhile. It returns once Close has closed the queue and
// the queue is drained.
func (s *Store) batcher(reqs chan *call, client Client, n *node, g *gate) {
	defer s.workers.Done()
	b := &batchState{calls: make([]*call, 0, s.opts.MaxBatch), group: groupOf(client, n)}
	full := min(s.opts.MaxBatch, maxScriptTakes)
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	for {
		g.collect.Lock()
		c, ok := <-reqs
		if !ok {
			g.collect.Unlock()
			return
		}
		b.calls = append(b.calls[:0], c)
		// The call that woke the collector readied it ahead of the goroutines already
		// runnable: those (handlers of requests read in the same round) would queue their
		// calls a moment later, each alone in a pipeline of its own. Let them run first, and
		// take what they queued: one yield, no timer, nothing to wait for when nothing else
		// is runnable (a lone call goes at once). Not with busyPipelines in flight: the hold
		// below gathers then, and a yield there cost a Redis 2 ms away 5% of its throughput
		// (TestTimingPipeliningHidesLatency).
		if g.inFlight.Load() < busyPipelines {
			runtime.Gosched()
		}
		open := s.drain(reqs, b)
		if open && len(b.calls) < full && g.inFlight.Load() >= busyPipelines {
			s.rt.holds.Add(1)
			// Only a pipeline that comes back from now on ends the hold.
			for drained := false; !drained; {
				select {
				case <-g.done:
				default:
					drained = true
				}
			}
			hold.Reset(holdTime)
		collect:
			for open && len(b.calls) < full {
				select {
				case c, ok := <-reqs:
					if !ok {
						open = false
						break collect
					}
					b.calls = append(b.calls, c)
					open = s.drain(reqs, b)
				case <-g.done:
					break collect
				case <-hold.C:
					break collect
				}
			}
			hold.Stop() // since Go 1.23, no stale tick is left in hold.C after Stop
		}
		g.lone.Store(len(b.calls) == 1)
		g.acquire()
		g.collect.Unlock()
		if n != nil {
			client = n.client.Load()
		}
		s.exec(b, client, n, g)
		clear(b.calls)
		g.returned()
	}
}

// drain appends to b what is queued in reqs, up to MaxBatch, without waiting. It reports
// false once reqs is closed.
func (s *Store) drain(reqs chan *call, b *batchState) bool {
	for len(b.calls) < s.opts.MaxBatch {
		select {
		case c, ok := <-reqs:
			if !ok {
				return false
			}
			b.calls = append(b.calls, c)
		default:
			return true
		}
	}
	return true
}

// batchState is a batcher's: the batch, and its script calls (reused).
type batchState struct {
	calls   []*call
	scripts []*scriptCall
	used    int // scripts[:used] are this batch's
	group   grouping
	pipe    redis.Pipeliner // reused: go-redis's Pipeline() allocates it and two closures
	pipeOf  Client          // the client of pipe
}

// pipeline returns a pipeline on client, empty (Exec empties it), reused from batch to batch.
func (b *batchState) pipeline(client Client) redis.Pipeliner {
	if b.pipe == nil || b.pipeOf != client {
		b.pipe, b.pipeOf = client.Pipeline(), client
	}
	return b.pipe
}

// add puts c in a script call of the batch that it fits, or in a new one.
func (b *batchState) add(c *call) {
	for _, sc := range b.scripts[:b.used] {
		if sc.fits(c, b.group) {
			sc.calls = append(sc.calls, c)
			sc.keys += len(c.keys)
			return
		}
	}
	if b.used == len(b.scripts) {
		b.scripts = append(b.scripts, &scriptCall{})
	}
	sc := b.scripts[b.used]
	b.used++
	sc.calls = append(sc.calls[:0], c)
	sc.keys = len(c.keys)
}

// reset drops the batch's script calls, keeping their buffers.
func (b *batchState) reset() {
	for _, sc := range b.scripts[:b.used] {
		sc.args.reset()
		clear(sc.calls)
		sc.calls, sc.cmd = sc.calls[:0], nil
	}
	b.used = 0
}

// exec sends b's calls as one pipeline of script calls on client and answers every call (n is
// the Cluster master that client speaks to, nil if none). Calls whose ctx has ended or whose
// deadline has passed are answered at once and not sent. The pipeline's deadline is the
// earliest of its calls' deadlines, capped by Options.Timeout: no call waits past its own
// deadline (one deadline per batch, no timer per call; a call with a later deadline may then
// time out up to the spread of its batch's deadlines early, only when Redis is slow). It
// counts the batch out of g's pipelines in flight (g.inFlight, added by the batcher) before
// it answers the calls sent.
func (s *Store) exec(b *batchState, client Client, n *node, g *gate) {
	now := time.Now()
	deadline := now.Add(s.opts.Timeout)
	live := 0
	batch := b.calls
	for _, c := range batch {
		err := c.ctx.Err()
		if err == nil && !c.deadline.IsZero() && !now.Before(c.deadline) {
			err = context.DeadlineExceeded
		}
		if err != nil {
			c.err = err
			s.deliver(c)
			continue
		}
		batch[live] = c
		live++
		if !c.deadline.IsZero() && c.deadline.Before(deadline) {
			deadline = c.deadline
		}
	}
	if live == 0 {
		g.landed()
		return
	}
	defer b.reset()
	for _, c := range batch[:live] {
		c.deadline = deadline // its command's: finish reads a failure after it as a timeout
		b.add(c)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	scripts := b.scripts[:b.used]
	pipe := b.pipeline(client)
	for _, sc := range scripts {
		_ = pipe.Process(ctx, once{sc.build(ctx, &s.sha)})
	}
	for _, c := range batch[:live] {
		c.sent.Store(true)
	}
	s.execPipe(ctx, pipe, live)
	s.retryNoScript(ctx, client, scripts)
	if n != nil {
		s.afterPipeline(ctx, n, scripts)
	}
	for _, sc := range scripts {
		sc.answer()
	}
	g.landed()
	for _, c := range batch[:live] {
		c.batch = int32(live)
		s.deliver(c)
	}
}

// once is a script call that go-redis must not send again by itself (its MaxRetries): a
// connection lost after Redis ran the script and before its reply came back would run it a
// second time, and count the Takes twice. Redis's answer NOSCRIPT, MOVED or ASK says that it
// did not run, and the store resends those itself (retryNoScript, afterPipeline).
type once struct{ *redis.IntSliceCmd }

// NoRetry tells go-redis not to resend the command after an error.
func (once) NoRetry() bool { return true }

// retryNoScript resends as EVAL, on client, the script calls that it answered NOSCRIPT: that
// server lost its script cache (restart, failover, SCRIPT FLUSH). The script did not run, so
// sending the same call again is safe; EVAL caches it.
func (s *Store) retryNoScript(ctx context.Context, client Client, scripts []*scriptCall) {
	var retry redis.Pipeliner
	takes := 0
	for _, sc := range scripts {
		if isNoScript(sc.cmd.Err()) {
			if retry == nil {
				retry = client.Pipeline()
			}
			sc.cmd = evalCmd(ctx, sc.cmd.Args())
			takes += len(sc.calls)
			_ = retry.Process(ctx, once{sc.cmd})
		}
	}
	if retry != nil {
		s.log.Info("redisstore: script not cached on a Redis server, sent with EVAL", "calls", retry.Len())
		s.execPipe(ctx, retry, takes)
	}
}
