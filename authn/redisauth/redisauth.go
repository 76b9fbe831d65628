// Package redisauth keeps authn's API key records in Redis, shared by every Warden replica,
// and invalidates the replicas' local key caches through Redis pub/sub.
//
// Records are hashes under Config.Prefix ("warden:apikey:key:<id>"), with no TTL; owner and
// tenant indexes are sets ("…:owner:<owner>", "…:tenant:<tenant>") used by List, which
// re-checks every record it loads. Put and Revoke write the record and PUBLISH its id on
// Config.Channel in one Lua script, so a subscriber never sees a message before the change.
// A Subscriber on each replica drops that id from its authn.APIKeys cache.
//
// It knows nothing of how keys are parsed or checked: that is authn.
package redisauth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/authn"
)

// Config configures a KeyStore and a Subscriber. Client is required.
type Config struct {
	// Client is a single-node, Sentinel or Cluster client. Required.
	Client redis.UniversalClient
	// Prefix starts every Redis key. Default "warden:apikey:".
	Prefix string
	// Channel carries the ids of changed keys. Default "warden:apikey:invalidate".
	Channel string
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("redisauth: Config.Client is required")
	}
	if c.Prefix == "" {
		c.Prefix = "warden:apikey:"
	}
	if c.Channel == "" {
		c.Channel = "warden:apikey:invalidate"
	}
	return nil
}

// KeyStore is an authn.KeyStore on Redis. Build it with NewKeyStore. Safe for concurrent use.
type KeyStore struct {
	cfg Config
}

var _ authn.KeyStore = (*KeyStore)(nil)

// NewKeyStore returns a KeyStore.
func NewKeyStore(cfg Config) (*KeyStore, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &KeyStore{cfg: cfg}, nil
}

func (s *KeyStore) recordKey(id string) string { return s.cfg.Prefix + "key:" + id }

// putScript replaces the record and announces it.
var putScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`)

// setFieldScript sets one field of an existing record, and announces it when ARGV[3] is not
// empty. It returns 0 when the record does not exist.
var setFieldScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] ~= '' then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
return 1`)

// Key implements authn.KeyStore.
func (s *KeyStore) Key(ctx context.Context, id string) (authn.KeyRecord, error) {
	m, err := s.cfg.Client.HGetAll(ctx, s.recordKey(id)).Result()
	if err != nil {
		return authn.KeyRecord{}, fmt.Errorf("redisauth: get key %s: %w", id, err)
	}
	if len(m) == 0 {
		return authn.KeyRecord{}, authn.ErrKeyNotFound
	}
	rec, err := decode(m)
	if err != nil {
		return authn.KeyRecord{}, fmt.Errorf("redisauth: key %s: %w", id, err)
	}
	return rec, nil
}

// Put implements authn.KeyStore.
func (s *KeyStore) Put(ctx context.Context, rec authn.KeyRecord) error {
	if rec.ID == "" {
		return errors.New("redisauth: key record without id")
	}
	fields, err := encode(rec)
	if err != nil {
		return err
	}
	args := append([]any{s.cfg.Channel, rec.ID}, fields...)
	if err := putScript.Run(ctx, s.cfg.Client, []string{s.recordKey(rec.ID)}, args...).Err(); err != nil {
		return fmt.Errorf("redisauth: put key %s: %w", rec.ID, err)
	}
	// The indexes live in other hash slots (Cluster), so they are written after the record;
	// List re-checks each record it loads, so a stale index entry is harmless.
	pipe := s.cfg.Client.Pipeline()
	if rec.Owner != "" {
		pipe.SAdd(ctx, s.cfg.Prefix+"owner:"+rec.Owner, rec.ID)
	}
	if rec.Tenant != "" {
		pipe.SAdd(ctx, s.cfg.Prefix+"tenant:"+rec.Tenant, rec.ID)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisauth: index key %s: %w", rec.ID, err)
	}
	return nil
}

// Revoke implements authn.KeyStore and tells every Subscriber.
func (s *KeyStore) Revoke(ctx context.Context, id string, at time.Time) error {
	return s.setField(ctx, id, "revoked_at", at, true)
}

// Touch implements authn.KeyStore.
func (s *KeyStore) Touch(ctx context.Context, id string, at time.Time) error {
	err := s.setField(ctx, id, "last_used_at", at, false)
	if errors.Is(err, authn.ErrKeyNotFound) {
		return nil
	}
	return err
}

func (s *KeyStore) setField(ctx context.Context, id, field string, at time.Time, announce bool) error {
	channel := ""
	if announce {
		channel = s.cfg.Channel
	}
	n, err := setFieldScript.Run(ctx, s.cfg.Client, []string{s.recordKey(id)},
		field, formatTime(at), channel, id).Int()
	if err != nil {
		return fmt.Errorf("redisauth: set %s of key %s: %w", field, id, err)
	}
	if n == 0 {
		return authn.ErrKeyNotFound
	}
	return nil
}

// List implements authn.KeyStore.
func (s *KeyStore) List(ctx context.Context, f authn.KeyFilter) ([]authn.KeyRecord, error) {
	var index string
	switch {
	case f.Owner != "":
		index = s.cfg.Prefix + "owner:" + f.Owner
	case f.Tenant != "":
		index = s.cfg.Prefix + "tenant:" + f.Tenant
	default:
		return nil, authn.ErrEmptyFilter
	}
	ids, err := s.cfg.Client.SMembers(ctx, index).Result()
	if err != nil {
		return nil, fmt.Errorf("redisauth: list keys: %w", err)
	}
	out := make([]authn.KeyRecord, 0, len(ids))
	for _, id := range ids {
		rec, err := s.Key(ctx, id)
		if errors.Is(err, authn.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if (f.Owner == "" || rec.Owner == f.Owner) && (f.Tenant == "" || rec.Tenant == f.Tenant) {
			out = append(out, rec)
		}
	}
	return out, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n).UTC(), nil
}

// encode flattens rec into HSET arguments. Slices and maps are JSON; a nil Scopes is left
// out, so that it decodes as nil ("not narrowed") and not as an empty list.
func encode(rec authn.KeyRecord) ([]any, error) {
	f := []any{
		"id", rec.ID, "env", rec.Env.String(), "digest", hex.EncodeToString(rec.Digest[:]),
		"owner", rec.Owner, "tenant", rec.Tenant, "tier", rec.Tier,
		"created_at", formatTime(rec.CreatedAt), "expires_at", formatTime(rec.ExpiresAt),
		"last_used_at", formatTime(rec.LastUsedAt), "revoked_at", formatTime(rec.RevokedAt),
		"rotated_from", rec.RotatedFrom,
	}
	if rec.Imported {
		f = append(f, "imported", "1")
	}
	for _, j := range []struct {
		name string
		v    any
		nil  bool
	}{
		{"roles", rec.Roles, rec.Roles == nil},
		{"scopes", rec.Scopes, rec.Scopes == nil},
		{"labels", rec.Labels, rec.Labels == nil},
	} {
		if j.nil {
			continue
		}
		b, err := json.Marshal(j.v)
		if err != nil {
			return nil, fmt.Errorf("redisauth: encode %s: %w", j.name, err)
		}
		f = append(f, j.name, string(b))
	}
	return f, nil
}

func decode(m map[string]string) (authn.KeyRecord, error) {
	var rec authn.KeyRecord
	var err error
	rec.ID, rec.Owner, rec.Tenant, rec.Tier, rec.RotatedFrom = m["id"], m["owner"], m["tenant"], m["tier"], m["rotated_from"]
	rec.Imported = m["imported"] == "1"
	if rec.Env, err = authn.ParseEnvironment(m["env"]); err != nil {
		return rec, err
	}
	d, err := hex.DecodeString(m["digest"])
	if err != nil || len(d) != len(rec.Digest) {
		return rec, errors.New("bad digest field")
	}
	copy(rec.Digest[:], d)
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{
		{"created_at", &rec.CreatedAt}, {"expires_at", &rec.ExpiresAt},
		{"last_used_at", &rec.LastUsedAt}, {"revoked_at", &rec.RevokedAt},
	} {
		if *t.dst, err = parseTime(m[t.name]); err != nil {
			return rec, fmt.Errorf("bad %s field", t.name)
		}
	}
	for _, j := range []struct {
		name string
		dst  any
	}{{"roles", &rec.Roles}, {"scopes", &rec.Scopes}, {"labels", &rec.Labels}} {
		if v, ok := m[j.name]; ok {
			if err := json.Unmarshal([]byte(v), j.dst); err != nil {
				return rec, fmt.Errorf("bad %s field", j.name)
			}
		}
	}
	return rec, nil
}
