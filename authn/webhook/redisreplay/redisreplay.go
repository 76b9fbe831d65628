// Package redisreplay is a webhook.ReplayStore on Redis, shared by every Warden replica: one
// `SET key 1 NX PX ttl` per verified delivery, so exactly one replica records an event first
// and every record expires.
//
// It knows nothing of webhook schemes or secrets; it only stores (source, event id) pairs.
package redisreplay

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Client is the part of a go-redis client the store uses: *redis.Client,
// *redis.ClusterClient and *redis.Ring all satisfy it. Each key is alone in its command, so
// Cluster needs no hash tags.
type Client interface {
	SetNX(ctx context.Context, key string, value any, expiration time.Duration) *redis.BoolCmd
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
}

// New returns a Store on c.
func New(c Client, cfg Config) *Store {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	return &Store{c: c, prefix: cfg.Prefix}
}

// Seen implements webhook.ReplayStore with SET key 1 NX PX ttl (go-redis sends EX when ttl
// is a whole number of seconds: the same thing). The Redis call is bounded by ctx.
func (s *Store) Seen(ctx context.Context, source, eventID string, ttl time.Duration) (bool, error) {
	if ttl < time.Millisecond {
		return false, fmt.Errorf("redisreplay: ttl %v is not positive", ttl)
	}
	return s.c.SetNX(ctx, s.Key(source, eventID), 1, ttl).Result()
}

// Key returns the Redis key of (source, eventID).
func (s *Store) Key(source, eventID string) string {
	return s.prefix + strconv.Itoa(len(source)) + ":" + source + ":" + eventID
}
