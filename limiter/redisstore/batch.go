package redisstore

import (
	"context"
	"fmt"
	"strconv"
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
// channel are reused, so a Take allocates only what go-redis needs for its command. The
// batcher never touches the caller's hits or out: everything it needs is copied into args.
type call struct {
	ctx      context.Context
	deadline time.Time // the Take's deadline; zero: Options.Timeout only
	keybuf   []byte
	keys     []string
	args     []any // "evalsha", sha, len(keys), keys..., now, 5 values per hit
	cmd      *redis.Cmd
	err      error
	state    atomic.Int32
	sent     atomic.Bool   // the command has left the queue for Redis
	done     chan struct{} // capacity 1: the batcher's answer
	batch    int32         // commands in the pipeline that answered it (0: none did)
}

// build fills c.keys and c.args for hits under tag.
func (c *call) build(s *Store, tag string, hits []limiter.Hit) error {
	c.keybuf = c.keybuf[:0]
	for _, h := range hits {
		if err := h.Limit.Validate(); err != nil {
			return fmt.Errorf("redisstore: limit %q: %w", h.Limit.Name, err)
		}
		if h.Cost < 0 {
			return fmt.Errorf("redisstore: limit %q: negative cost %d", h.Limit.Name, h.Cost)
		}
		c.keybuf = append(c.keybuf, s.opts.Prefix...)
		c.keybuf = append(c.keybuf, '{')
		c.keybuf = append(c.keybuf, tag...)
		c.keybuf = append(c.keybuf, '}')
		c.keybuf = append(c.keybuf, h.Key...)
	}
	all := string(c.keybuf) // one allocation for every key of the Take
	c.keys = c.keys[:0]
	c.args = append(c.args[:0], "evalsha", s.sha, len(hits))
	off := 0
	for _, h := range hits {
		n := len(s.opts.Prefix) + len(tag) + 2 + len(h.Key)
		k := all[off : off+n]
		off += n
		c.keys = append(c.keys, k)
		c.args = append(c.args, k)
	}
	if s.opts.Now != nil {
		c.args = append(c.args, strconv.FormatInt(s.opts.Now().UnixMicro(), 10), testMinTTL)
	} else {
		c.args = append(c.args, "", 1)
	}
	for _, h := range hits {
		p := h.Limit.Params()
		x, y := p.Granule, p.Granules
		l := p.Limit
		if p.Algorithm == limiter.TokenBucket {
			x, y, l = p.UnitTicks, p.MicroTicks, p.Burst
		}
		c.args = append(c.args, int64(p.Algorithm), h.Cost, p.Period, l, x, y)
	}
	return nil
}

func (s *Store) recycle(c *call) {
	c.ctx, c.cmd, c.err, c.deadline = nil, nil, nil, time.Time{}
	clear(c.args)
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

// batcher is one of Options.Pipelines goroutines sharing the queue reqs (the store's, or one
// Cluster master's). It waits for a call, then takes whatever else is already queued (up to
// MaxBatch) without waiting, and sends it all as one pipeline, on client or, for a Cluster
// master, on n's client: a lone call goes out at once, and under load the calls that queue up
// while a pipeline is in Redis form the next one. There is no timer. It returns once Close
// has closed the queue and the queue is drained.
func (s *Store) batcher(reqs chan *call, client Client, n *node) {
	defer s.workers.Done()
	batch := make([]*call, 0, s.opts.MaxBatch)
	for {
		c, ok := <-reqs
		if !ok {
			return
		}
		batch = append(batch[:0], c)
	fill:
		for len(batch) < s.opts.MaxBatch {
			select {
			case c, ok := <-reqs:
				if !ok {
					break fill
				}
				batch = append(batch, c)
			default:
				break fill
			}
		}
		if n != nil {
			client = n.client.Load()
		}
		s.exec(batch, client, n)
		clear(batch)
	}
}

// exec sends batch as one pipeline on client and answers every call (n is the Cluster master
// that client speaks to, nil if none). Calls whose ctx has ended or whose deadline has passed
// are answered at once and not sent. The pipeline's deadline is the earliest of its calls'
// deadlines, capped by Options.Timeout: no call waits past its own deadline (one deadline
// per batch, no timer per call; a call with a later deadline may then time out up to the
// spread of its batch's deadlines early, only when Redis is slow).
func (s *Store) exec(batch []*call, client Client, n *node) {
	now := time.Now()
	deadline := now.Add(s.opts.Timeout)
	live := 0
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
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	pipe := client.Pipeline()
	for _, c := range batch[:live] {
		c.deadline = deadline // its command's: finish reads a failure after it as a timeout
		c.cmd = redis.NewCmd(ctx, c.args...)
		c.cmd.SetFirstKeyPos(3)
		_ = pipe.Process(ctx, c.cmd)
		c.sent.Store(true)
	}
	if live > 0 {
		s.execPipe(ctx, pipe)
	}
	s.retryNoScript(ctx, client, batch[:live])
	if n != nil && live > 0 {
		s.afterPipeline(ctx, n, batch[:live])
	}
	for _, c := range batch[:live] {
		c.err = c.cmd.Err()
		c.batch = int32(live)
		s.deliver(c)
	}
}

// retryNoScript resends as EVAL, on client, the calls that it answered NOSCRIPT: that server
// lost its script cache (restart, failover, SCRIPT FLUSH). The script did not run, so sending
// the same call again is safe; EVAL caches it.
func (s *Store) retryNoScript(ctx context.Context, client Client, calls []*call) {
	var retry redis.Pipeliner
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			if retry == nil {
				retry = client.Pipeline()
			}
			c.cmd = s.evalCmd(ctx, c)
			_ = retry.Process(ctx, c.cmd)
		}
	}
	if retry != nil {
		s.log.Info("redisstore: script not cached on a Redis server, sent with EVAL", "calls", retry.Len())
		s.execPipe(ctx, retry)
	}
}
