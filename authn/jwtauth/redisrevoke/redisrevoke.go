// Package redisrevoke is a jwtauth.RevocationStore on Redis, shared by every Warden replica:
// a revoked jti is a key that expires with the token (SET key 1 PXAT exp), and a lookup is
// one EXISTS. Each operation touches one key, so it works unchanged on Redis Cluster.
//
// It knows nothing of JWTs beyond the jti and the expiry, and nothing of how the client was
// built (single node, Sentinel, Cluster).
package redisrevoke

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix when Config.Prefix is empty.
const DefaultPrefix = "warden:jwt:revoked:"

// Client is the part of a go-redis client the store uses; *redis.Client,
// *redis.ClusterClient, *redis.Ring and redis.UniversalClient satisfy it.
type Client interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// Config configures a Store.
type Config struct {
	// Prefix of every key; the jti follows it verbatim. Default DefaultPrefix.
	Prefix string
	// Now is the clock used to skip revocations of tokens that have already expired.
	// Default time.Now. Expiry itself is Redis's (PXAT is absolute, so replicas agree).
	Now func() time.Time
}

// Store implements jwtauth.RevocationStore on Redis. Create it with New. It holds no state
// of its own and is safe for concurrent use; every call is one round trip bounded by ctx.
type Store struct {
	c      Client
	prefix string
	now    func() time.Time
}

// New returns a Store that uses c.
func New(c Client, cfg Config) *Store {
	s := &Store{c: c, prefix: cfg.Prefix, now: cfg.Now}
	if s.prefix == "" {
		s.prefix = DefaultPrefix
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Revoke records jti as revoked until exp (SET key 1 PXAT exp). A token that has already
// expired needs no record.
func (s *Store) Revoke(ctx context.Context, jti string, exp time.Time) error {
	if !exp.After(s.now()) {
		return nil
	}
	return s.c.Do(ctx, "SET", s.prefix+jti, "1", "PXAT", exp.UnixMilli()).Err()
}

// Revoked reports whether jti is revoked (EXISTS key).
func (s *Store) Revoked(ctx context.Context, jti string) (bool, error) {
	n, err := s.c.Do(ctx, "EXISTS", s.prefix+jti).Int64()
	return n > 0, err
}
