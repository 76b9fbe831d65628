// Package redisstore is a limiter.Store on Redis: every algorithm of package limiter in one Lua
// script, called by EVALSHA (falling back to EVAL after a restart or failover emptied the
// script cache), on the time of the Redis server, with hash-tagged keys so that one Take never
// spans two Cluster slots. Concurrent Takes are coalesced into pipelines, so throughput is
// bound by Redis rather than by round trips.
//
// It knows how to speak to Redis and nothing of descriptors, failure policies or gRPC: the
// Limiter in package limiter decides what to do when a Take fails.
//
// Usage:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379", ContextTimeoutEnabled: true})
//	s, err := redisstore.New(rdb, redisstore.Options{Logger: logger})
//	if err != nil { ... }
//	defer s.Close()
//	allowed, err := s.Take(ctx, "tenant-42", hits, out)
package redisstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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
	Del(ctx context.Context, keys ...string) *redis.IntCmd
}

// Options configures a Store. The zero value is usable: every field has a default.
type Options struct {
	// Prefix starts every key. Default "warden:rl:". A key is Prefix + "{" + tag + "}" + ":" +
	// Hit.Key, so the keys of one Take share a Cluster hash slot.
	Prefix string
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
	// Pipelines is the number of pipelines in flight at once (the number of batcher
	// goroutines). Default 2: one batch is being collected while the other is in Redis.
	Pipelines int
	// Unbatched sends every Take as its own EVALSHA from the caller's goroutine, starting no
	// goroutine. Default false (batched).
	Unbatched bool
	// Logger receives script reloads and batch failures. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultPrefix    = "warden:rl:"
	defaultTimeout   = time.Second
	defaultMaxBatch  = 128
	defaultPipelines = 2
	// testMinTTL is the smallest key TTL (ms) when Options.Now supplies the time: a test's
	// clock does not follow Redis's, so keys must not expire on Redis's clock mid-test.
	testMinTTL = 60000
)

//go:embed take.lua
var takeLua string

// ErrClosed is returned by Take after Close.
var ErrClosed = errors.New("redisstore: store closed")

// Store is a limiter.Store and limiter.Resetter on Redis. Each Take is one script execution:
// all of its hits are checked, and consumed only if all are allowed, atomically with respect to
// every other Take on the same Redis, from any process. Time is the Redis server's, so the
// local clock does not matter.
//
// Build it with New; the zero value is not usable. Unless Options.Unbatched is set, New starts
// the batcher goroutines and Close stops them: call Close when done. A Store is safe for
// concurrent use; concurrent Takes are sent together as pipelines.
type Store struct {
	client  Client
	opts    Options
	log     *slog.Logger
	sha     string
	pool    sync.Pool // of *call
	reqs    chan *call
	mu      sync.RWMutex // held for reading while enqueueing, for writing by Close
	closed  bool
	workers sync.WaitGroup
}

var (
	_ limiter.Store    = (*Store)(nil)
	_ limiter.Resetter = (*Store)(nil)
)

// New returns a Store on client. It does not contact Redis: the script is loaded on first use
// and again whenever a server answers NOSCRIPT.
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
	if !opts.Unbatched {
		s.reqs = make(chan *call, opts.MaxBatch*opts.Pipelines)
		s.workers.Add(opts.Pipelines)
		for range opts.Pipelines {
			go s.batcher()
		}
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
	s.mu.Unlock()
	s.workers.Wait()
	return nil
}

// Take implements limiter.Store. It is one round trip to Redis (shared with other concurrent
// Takes when batched). It returns ctx.Err() as soon as ctx ends, even while its command is in
// flight.
func (s *Store) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
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
	if s.opts.Unbatched {
		s.runOne(ctx, c)
		return s.finish(ctx, c, hits, out)
	}
	c.ctx = ctx
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		c.ctx = nil
		s.pool.Put(c)
		return false, ErrClosed
	}
	select {
	case s.reqs <- c:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		c.ctx = nil
		s.pool.Put(c)
		return false, ctx.Err()
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		if c.state.CompareAndSwap(pending, abandoned) {
			// The batcher owns c now and recycles it when its pipeline returns.
			return false, ctx.Err()
		}
		<-c.done // answered meanwhile
	}
	return s.finish(ctx, c, hits, out)
}

// finish decodes c's reply into out and recycles c. An error after ctx ended is ctx's.
func (s *Store) finish(ctx context.Context, c *call, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	defer s.recycle(c)
	if c.err != nil {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		// The connection's deadline (ctx's, with ContextTimeoutEnabled) can fire a moment
		// before ctx itself reports it.
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return false, context.DeadlineExceeded
		}
		return false, fmt.Errorf("redisstore: %w", c.err)
	}
	reply, ok := c.cmd.Val().([]any)
	if !ok || len(reply) != 1+4*len(hits) {
		return false, fmt.Errorf("redisstore: unexpected script reply %T of %d values", c.cmd.Val(), len(reply))
	}
	all, _ := reply[0].(int64)
	for i, h := range hits {
		r := reply[1+4*i:]
		allowed, _ := r[0].(int64)
		remaining, _ := r[1].(int64)
		reset, _ := r[2].(int64)
		retry, _ := r[3].(int64)
		st := limiter.Status{
			Allowed:    allowed == 1,
			Limit:      h.Limit.Limit,
			Remaining:  remaining,
			ResetAfter: time.Duration(reset) * time.Microsecond,
			RetryAfter: time.Duration(retry) * time.Microsecond,
		}
		if h.Limit.Algorithm == limiter.TokenBucket && h.Limit.Burst > 0 {
			st.Limit = h.Limit.Burst
		}
		out[i] = st
	}
	return all == 1, nil
}

// Reset implements limiter.Resetter: it deletes the counter of key under tag.
func (s *Store) Reset(ctx context.Context, tag, key string) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.client.Del(ctx, s.key(tag, key)).Err(); err != nil {
		return fmt.Errorf("redisstore: reset: %w", err)
	}
	return nil
}

func (s *Store) key(tag, key string) string {
	return s.opts.Prefix + "{" + tag + "}:" + key
}

// runOne runs c alone, from the caller's goroutine: one EVALSHA, and one EVAL after NOSCRIPT.
func (s *Store) runOne(ctx context.Context, c *call) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	argv := c.args[3+len(c.keys):]
	c.cmd = s.client.EvalSha(ctx, s.sha, c.keys, argv...)
	if isNoScript(c.cmd.Err()) {
		c.cmd = s.client.Eval(ctx, takeLua, c.keys, argv...)
	}
	c.err = c.cmd.Err()
}

// evalCmd is c's command with the script's source instead of its hash, for after NOSCRIPT.
// EVAL also caches the script on that server, so the next EVALSHA finds it.
func (s *Store) evalCmd(ctx context.Context, c *call) *redis.Cmd {
	args := make([]any, len(c.args))
	copy(args, c.args)
	args[0], args[1] = "eval", takeLua
	cmd := redis.NewCmd(ctx, args...)
	cmd.SetFirstKeyPos(3)
	return cmd
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}
