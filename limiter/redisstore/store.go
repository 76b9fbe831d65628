// Package redisstore is a limiter.Store on Redis: every algorithm of package limiter in one Lua
// script, called by EVALSHA (falling back to EVAL after a restart or failover emptied the
// script cache), on the time of the Redis server, with hash-tagged keys so that one Take never
// spans two Cluster slots. Concurrent Takes are coalesced into pipelines, so throughput is
// bound by Redis rather than by round trips, and the Takes of a batch into one script call
// (up to 64; on a Cluster, one call per slot), so Redis parses one command and enters the
// script once for all of them. On a Redis Cluster the pipelines are formed and
// sent per master, from the store's own map of slots to masters (see cluster.go), and the
// store names the master of a tag (Shard) so that the Limiter keeps a breaker per master.
//
// It knows how to speak to Redis and nothing of descriptors, failure policies or gRPC: the
// Limiter in package limiter decides what to do when a Take fails.
//
// The script is loaded before the first decision: Load at start (readiness waits for it), and
// OnConnect on every new connection, so that a restarted server or a promoted replica has it
// before a Take reaches it.
//
// Usage:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true,
//		OnConnect: redisstore.OnConnect})
//	s, err := redisstore.New(rdb, redisstore.Options{Logger: logger})
//	if err != nil { ... }
//	defer s.Close()
//	if err := s.Load(ctx); err != nil { ... } // before reporting ready
//	allowed, err := s.Take(ctx, "tenant-42", hits, out)
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/limiter"
)

// Client is the part of a go-redis client that the store uses. *redis.Client (also as built by
// redis.NewFailoverClient for Sentinel), *redis.ClusterClient, *redis.Ring and
// redis.UniversalClient all satisfy it.
type Client interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
	Process(ctx context.Context, cmd redis.Cmder) error
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// Options configures a Store. The zero value is usable: every field has a default.
type Options struct {
	// Prefix starts every key. Default "warden:rl:". The counters of a tag are fields of
	// hashes named Prefix + "{" + a short name of the tag's Cluster slot + "}" + 4 hex
	// digits, so the keys of one Take share a Cluster hash slot (see names.go and the
	// README's "Redis storage"; older Wardens named a key per counter, Prefix + "{" + tag +
	// "}" + Hit.Key: old and new replicas count apart during a rolling upgrade).
	Prefix string
	// Hashes is the number of Redis hashes that the counters of one Cluster hash slot (on a
	// single server: of one slot of the tags, usually of one domain) are spread over. Each
	// should hold from about 20 to at most 126 live counters (Redis's
	// hash-max-listpack-entries, 128 by default, less two fields of the store's own): keep
	// Hashes near the live counters of one slot divided by 60. Fewer counters per hash cost
	// memory (a hash costs about 100 B of its own), more than the listpack's limit make
	// Redis store the hash as a table (about 80 B per counter). Default 16384 (from 300,000
	// to 2,000,000 live counters per slot); at most 65536. Changing it renames the hashes:
	// counters start over (as during an upgrade, see the README).
	Hashes int
	// Now, when set, supplies the time passed to the script instead of the Redis server's
	// TIME. Only for tests that walk a grid of instants: in production, nil, so that replicas
	// with skewed clocks agree. With Now set, keys live at least a minute (Redis expires them
	// on its own clock, which a test's clock does not follow). Default nil (Redis TIME).
	Now func() time.Time
	// Timeout caps how long one Redis round trip may take, whatever the caller's deadline.
	// Default 1s. It is applied through the context passed to go-redis, which honours it for
	// network I/O only when the client has ContextTimeoutEnabled (otherwise its ReadTimeout
	// and WriteTimeout apply); callers always get their own ctx.Err() when their ctx ends.
	Timeout time.Duration
	// MaxBatch is the largest number of Takes sent in one pipeline. Default 128.
	MaxBatch int
	// Pipelines is the largest number of pipelines in flight at once (the number of batcher
	// goroutines, each using one connection of the client's pool while its pipeline is out).
	// A Take that finds nothing queued and no pipeline in flight goes out at once from its
	// own goroutine, alone, in one of these slots: no batcher in between (Stats.Direct).
	// Otherwise it is queued, and one batcher at a time collects what is queued, once the
	// goroutines already runnable have queued theirs (one yield, no timer): with fewer than
	// two pipelines in flight it sends it at once, so a Take never waits for others; with
	// more, it keeps collecting until one comes back, the batch fills a script call, or 50
	// µs have passed, so that under load the Takes that queue while the others are in Redis
	// share a script call. Default 16: enough that a Redis a few milliseconds away stays
	// busy; keep the client's pool size above it. On a Cluster, per master.
	Pipelines int
	// Unbatched sends every Take as its own EVALSHA from the caller's goroutine, starting no
	// goroutine; on a Cluster, the ClusterClient routes it, and Shard names no master (one
	// breaker for all). Default false (batched).
	Unbatched bool
	// Logger receives script reloads and batch failures. Default slog.Default().
	Logger *slog.Logger
	// Observer, when set, is told of every round trip to Redis (its commands and its
	// latency); Stats counts them either way. Default nil.
	Observer Observer
}

const (
	defaultPrefix    = "warden:rl:"
	defaultTimeout   = time.Second
	defaultMaxBatch  = 128
	defaultPipelines = DefaultPipelines
	// testMinTTL is the smallest key TTL (ms) when Options.Now supplies the time: a test's
	// clock does not follow Redis's, so keys must not expire on Redis's clock mid-test.
	testMinTTL = 60000
)

// DefaultPipelines is the default of Options.Pipelines.
const DefaultPipelines = 16

//go:embed take.lua
var takeLua string

// ErrClosed is returned by Take after Close.
var ErrClosed = errors.New("redisstore: store closed")

// errNoNode: no master of the Cluster is known for the Take's slot (the slot map is being
// refreshed).
var errNoNode = errors.New("redisstore: no cluster master known for the slot")

// Store is a limiter.Store and limiter.Resetter on Redis. Each Take runs in one script
// execution (alone, or with the other Takes of its batch, one after the other): all of its
// hits are checked, and consumed only if all are allowed, atomically with respect to every
// other Take on the same Redis, from any process. Time is the Redis server's, so the
// local clock does not matter.
//
// Build it with New; the zero value is not usable. Unless Options.Unbatched is set, New starts
// the batcher goroutines and Close stops them: call Close when done. A Store is safe for
// concurrent use; concurrent Takes are sent together, as pipelines of script calls.
type Store struct {
	client  Client
	opts    Options
	log     *slog.Logger
	sha     string
	pool    sync.Pool // of *call
	reqs    chan *call
	gate    *gate        // of reqs
	mu      sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed  bool
	workers sync.WaitGroup
	cl      *clusterState // on a Cluster (batched), the masters' queues and the slot map
	rt      rtStats
	takeObs TakeObserver // Options.Observer's, if it is one
}

var (
	_ limiter.Store    = (*Store)(nil)
	_ limiter.Resetter = (*Store)(nil)
	_ limiter.Sharded  = (*Store)(nil)

	_ limiter.DeadlineTaker = (*Store)(nil)
)

// New returns a Store on client. It does not contact Redis: call Load before the first Take
// (and install OnConnect in the client's options). A server that answers NOSCRIPT anyway gets
// the script with EVAL.
func New(client Client, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = defaultMaxBatch
	}
	if opts.Pipelines <= 0 {
		opts.Pipelines = defaultPipelines
	}
	if opts.Hashes <= 0 {
		opts.Hashes = defaultHashes
	}
	if opts.Hashes > maxHashes {
		return nil, fmt.Errorf("redisstore: Hashes = %d, at most %d", opts.Hashes, maxHashes)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Store{
		client: client,
		opts:   opts,
		log:    opts.Logger,
		sha:    redis.NewScript(takeLua).Hash(),
	}
	s.pool.New = func() any { return &call{done: make(chan struct{}, 1)} }
	s.takeObs, _ = opts.Observer.(TakeObserver)
	if opts.Unbatched {
		return s, nil
	}
	if cc, ok := client.(*redis.ClusterClient); ok {
		// One queue per master, started as the slot map names them (see cluster.go).
		s.cl = newClusterState(cc)
		s.cl.stopped.Add(1)
		go s.refresher()
		return s, nil
	}
	s.reqs = make(chan *call, opts.MaxBatch*opts.Pipelines)
	s.workers.Add(opts.Pipelines)
	s.gate = newGate(opts.Pipelines, groupOf(client, nil))
	for range opts.Pipelines {
		go s.batcher(s.reqs, client, nil, s.gate)
	}
	return s, nil
}

// Close stops the batcher goroutines after answering every Take already queued. Takes after
// Close return ErrClosed. Close does not close the Redis client, which the caller owns.
// Calling Close twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.reqs != nil {
		close(s.reqs)
	}
	if s.cl != nil {
		close(s.cl.stop)
		s.cl.mu.Lock()
		for _, n := range s.cl.nodes {
			close(n.reqs)
		}
		s.cl.mu.Unlock()
	}
	s.mu.Unlock()
	if s.cl != nil {
		s.cl.stopped.Wait()
	}
	s.workers.Wait()
	return nil
}

// Load loads the script on every server the client knows (every shard of a Cluster), so that
// the first Take is one EVALSHA like every other. Call it at start, before reporting ready; it
// is idempotent and cheap, so a readiness check may call it again.
func (s *Store) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.client.ScriptLoad(ctx, takeLua).Err(); err != nil {
		return fmt.Errorf("redisstore: load script: %w", err)
	}
	if s.cl != nil {
		s.refresh(ctx)
		if s.cl.topo.Load() == nil {
			return errors.New("redisstore: no cluster slot map")
		}
	}
	return nil
}

// OnConnect loads the script on a new connection: use it as the OnConnect of the go-redis
// client's options (redis.Options, ClusterOptions, FailoverOptions). Every reconnect, also to
// a restarted server or a promoted replica, then finds the script cached before the first
// Take. A failure is not the connection's: it is ignored (Sentinel connections get the hook
// too and do not know SCRIPT), and a server still without the script gets it through the
// NOSCRIPT fallback.
func OnConnect(ctx context.Context, cn *redis.Conn) error {
	_ = cn.ScriptLoad(ctx, takeLua).Err()
	return nil
}

// Take implements limiter.Store. It is one round trip to Redis (shared with other concurrent
// Takes when batched). It returns as soon as ctx ends, even while its command is in flight:
// with an error wrapping limiter.ErrTimeout and ctx.Err() when the command had been sent
// (Redis is slow or hung), with ctx.Err() alone when it was still queued here.
func (s *Store) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	dl, _ := ctx.Deadline()
	return s.TakeBy(ctx, dl, tag, hits, out)
}

// TakeBy implements limiter.DeadlineTaker: Take, answered by deadline (the zero time: none
// but Options.Timeout) without a timer of its own. A batch is sent with the earliest
// deadline of its Takes (at most Options.Timeout from then), so that no Take waits past its
// deadline for a slow Redis; a Take whose deadline has passed while it was queued is answered
// with context.DeadlineExceeded and not sent. This needs the client's ContextTimeoutEnabled
// (without it, go-redis applies its ReadTimeout and WriteTimeout instead, and a Take waits
// until ctx ends).
func (s *Store) TakeBy(ctx context.Context, deadline time.Time, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	if len(out) != len(hits) {
		return false, fmt.Errorf("redisstore: len(out) = %d, want len(hits) = %d", len(out), len(hits))
	}
	if len(hits) == 0 {
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	c := s.pool.Get().(*call)
	if err := c.build(s, tag, hits); err != nil {
		s.pool.Put(c)
		return false, err
	}
	c.deadline = deadline
	if s.opts.Unbatched {
		s.runOne(ctx, c)
		return s.finish(ctx, c, hits, out)
	}
	c.ctx, c.batch = ctx, 0
	reqs, g := s.reqs, s.gate
	var n *node
	if s.cl != nil {
		c.slot = keySlot(c.keys[0])
		if n = s.nodeFor(ctx, c.slot); n == nil {
			c.ctx = nil
			s.pool.Put(c)
			return false, errNoNode
		}
		reqs, g = n.reqs, n.gate
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		c.ctx = nil
		s.pool.Put(c)
		return false, ErrClosed
	}
	if g.claim(reqs) {
		// Nothing to batch with: sent from here, answered in c.done before sendAlone returns.
		s.workers.Add(1) // Close waits for it as for a batcher
		s.mu.RUnlock()
		s.sendAlone(c, n, g)
	} else {
		select {
		case reqs <- c:
			s.mu.RUnlock()
		case <-ctx.Done():
			s.mu.RUnlock()
			c.ctx = nil
			s.pool.Put(c)
			return false, ctx.Err()
		}
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		sent := c.sent.Load() // before giving c up: the batcher may recycle it at once
		if c.state.CompareAndSwap(pending, abandoned) {
			// The batcher owns c now and recycles it when its pipeline returns.
			if sent {
				return false, timeoutError(ctx)
			}
			return false, ctx.Err()
		}
		<-c.done // answered meanwhile
	}
	if s.takeObs != nil && c.batch > 0 {
		s.takeObs.TakeAnswered(ctx, int(c.batch))
	}
	return s.finish(ctx, c, hits, out)
}

// finish decodes c's reply into out and recycles c. An error after ctx ended is ctx's.
func (s *Store) finish(ctx context.Context, c *call, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	defer s.recycle(c)
	if c.err != nil {
		// The connection's deadline (the Take's, with ContextTimeoutEnabled) can fire a
		// moment before ctx itself reports it, and the Take's deadline may be before ctx's.
		d, ok := ctx.Deadline()
		if !c.deadline.IsZero() && (!ok || c.deadline.Before(d)) {
			d, ok = c.deadline, true
		}
		late := ctx.Err() != nil || ok && !time.Now().Before(d)
		switch {
		case late && c.sent.Load():
			return false, timeoutError(ctx)
		case late:
			if err := ctx.Err(); err != nil {
				return false, err
			}
			return false, context.DeadlineExceeded
		}
		if c.sent.Load() && lost(c.err) {
			return false, fmt.Errorf("redisstore: %w: %w", limiter.ErrLost, c.err)
		}
		return false, fmt.Errorf("redisstore: %w", c.err)
	}
	reply := c.reply
	if len(reply) != 1+4*len(hits) {
		return false, fmt.Errorf("redisstore: unexpected script reply of %d values, want %d", len(reply), 1+4*len(hits))
	}
	for i, h := range hits {
		r := reply[1+4*i : 1+4*i+4]
		st := limiter.Status{
			Allowed:    r[0] == 1,
			Limit:      h.Limit.Limit,
			Remaining:  r[1],
			ResetAfter: time.Duration(r[2]) * time.Microsecond,
			RetryAfter: time.Duration(r[3]) * time.Microsecond,
		}
		if h.Limit.Algorithm == limiter.TokenBucket && h.Limit.Burst > 0 {
			st.Limit = h.Limit.Burst
		}
		out[i] = st
	}
	return reply[0] == 1, nil
}

// timeoutError is the error of a Take whose command was sent and whose ctx ended before the
// answer came back.
func timeoutError(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = context.DeadlineExceeded
	}
	return fmt.Errorf("redisstore: %w: %w", limiter.ErrTimeout, err)
}

// Reset implements limiter.Resetter: it deletes the counter of key under tag (its field, or
// the sorted set of a sliding log).
func (s *Store) Reset(ctx context.Context, tag, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	name := s.name(tag, key)
	pipe := s.client.Pipeline()
	pipe.HDel(ctx, name[:len(name)-fieldLen], name[len(name)-fieldLen:])
	pipe.Del(ctx, name)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redisstore: reset: %w", err)
	}
	return nil
}

// runOne runs c alone, from the caller's goroutine: one EVALSHA, and one EVAL after NOSCRIPT.
func (s *Store) runOne(ctx context.Context, c *call) {
	dl := time.Now().Add(s.opts.Timeout)
	if !c.deadline.IsZero() && c.deadline.Before(dl) {
		dl = c.deadline
	}
	ctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	c.sent.Store(true)
	start := s.rtBegin()
	one := [1]*call{c}
	args := c.one.build(&s.sha, one[:]) // "evalsha", sha, len(keys), keys..., ARGV...
	cmd := scriptCmd(ctx, args)
	_ = s.client.Process(ctx, once{cmd})
	s.rtDone(1, 1, start)
	if isNoScript(cmd.Err()) {
		start = s.rtBegin()
		cmd = evalCmd(ctx, args)
		_ = s.client.Process(ctx, once{cmd})
		s.rtDone(1, 1, start)
	}
	c.reply, c.err = cmd.Val(), cmd.Err()
}

// evalCmd is the script call of args ("evalsha", sha, …) with the script's source instead of
// its hash, for after NOSCRIPT. EVAL also caches the script on that server, so the next
// EVALSHA finds it.
func evalCmd(ctx context.Context, args []any) *redis.IntSliceCmd {
	a := make([]any, len(args))
	copy(a, args)
	a[0], a[1] = "eval", takeLua
	return scriptCmd(ctx, a)
}

// lost reports whether err says that the connection failed while reading or writing: a
// command sent may have run (a refused dial or a reply of Redis says that it did not).
func lost(err error) bool {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && (op.Op == "read" || op.Op == "write")
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
