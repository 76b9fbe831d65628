// Package redisreplay is a webhook.ReplayStore on Redis, shared by every Warden replica: one
// `SET key token NX GET PX ttl` per verified delivery, so exactly one replica records an event
// first and every record expires.
//
// It knows nothing of webhook schemes or secrets; it only stores (source, event id) pairs.
package redisreplay

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client is the part of a go-redis client the store uses: *redis.Client,
// *redis.ClusterClient and *redis.Ring all satisfy it. Each key is alone in its command, so
// Cluster needs no hash tags.
type Client interface {
	SetArgs(ctx context.Context, key string, value any, a redis.SetArgs) *redis.StatusCmd
}

// DefaultPrefix is Config.Prefix's default.
const DefaultPrefix = "warden:webhook:"

// Config configures a Store.
type Config struct {
	// Prefix starts every key. Default DefaultPrefix. A key is
	// Prefix + len(source) + ":" + source + ":" + eventID, so no two (source, id) pairs share one.
	Prefix string
}

// Store is a webhook.ReplayStore on Redis. Build it with New; the zero value is not usable.
// It holds no state of its own and is safe for concurrent use.
type Store struct {
	c      Client
	prefix string
	id     string        // this Store's random id, the start of its tokens
	seq    atomic.Uint64 // the last token's number
}

// New returns a Store on c.
func New(c Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather than return an error)
	return &Store{c: c, prefix: cfg.Prefix, id: strconv.FormatUint(binary.LittleEndian.Uint64(b[:]), 36) + ":"}
}

// Seen implements webhook.ReplayStore with SET key token NX GET PX ttl (go-redis sends EX when
// ttl is a whole number of seconds: the same thing), token unique to this call. The Redis call
// is bounded by ctx.
//
// The token makes the record idempotent. go-redis resends a command whose reply was lost with
// its connection (MaxRetries), after Redis may already have run it: with a constant value the
// resent SET NX would find the delivery's own record and call it a replay, and the sender's
// later retries would all be refused too, so the event would be lost. GET returns the record
// that stopped the SET: if it is this call's own token, this call is the first.
func (s *Store) Seen(ctx context.Context, source, eventID string, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		return false, fmt.Errorf("redisreplay: ttl %v is not positive", ttl)
	}
	token := s.id + strconv.FormatUint(s.seq.Add(1), 36)
	prev, err := s.c.SetArgs(ctx, s.Key(source, eventID), token, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return true, nil // no record: this call's SET wrote it
	case err != nil:
		return false, err
	}
	return prev == token, nil
}

// Key returns the Redis key of (source, eventID).
func (s *Store) Key(source, eventID string) string {
	return s.prefix + strconv.Itoa(len(source)) + ":" + source + ":" + eventID
}
