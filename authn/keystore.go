package authn

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Digest is an API key digest: HMAC-SHA256(pepper, secret).
type Digest = [digestLen]byte

// KeyRecord is what Warden stores about an API key: never the secret, only its digest.
// Records are plain values; slices and maps are shared and read-only once stored.
type KeyRecord struct {
	ID     string      // the key id: the part between the prefix and "_", or ImportedKeyID
	Env    Environment // live or test; must match the key's prefix
	Digest Digest      // HMAC-SHA256(pepper, secret), or over the whole key if Imported
	// Imported is set on a key Warden did not issue (APIKeys.Import): its digest covers the
	// whole key and its id is derived from the digest.
	Imported bool
	Owner    string // subject of the principal the key authenticates
	Tenant   string
	Roles    []string
	// Scopes narrow the roles; nil means not narrowed (see Principal.Scopes).
	Scopes []string
	Tier   string
	// Labels become Principal.Claims.
	Labels    map[string]string
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// LastUsedAt is updated in the background and at most once per
	// APIKeysConfig.LastUsedInterval: it is approximate.
	LastUsedAt time.Time
	// RevokedAt is when the key stops working because it was revoked or rotated; zero means
	// not revoked. A future RevokedAt is a rotation's grace period: the key still works until
	// then.
	RevokedAt time.Time
	// RotatedFrom is the id of the key this one replaced, if any.
	RotatedFrom string
}

// effectiveExpiry is the earlier of ExpiresAt and RevokedAt (zero if neither is set).
func (r *KeyRecord) effectiveExpiry() time.Time {
	switch {
	case r.RevokedAt.IsZero():
		return r.ExpiresAt
	case r.ExpiresAt.IsZero() || r.RevokedAt.Before(r.ExpiresAt):
		return r.RevokedAt
	}
	return r.ExpiresAt
}

// KeyFilter selects records for KeyStore.List. At least one field must be set.
type KeyFilter struct {
	Owner  string
	Tenant string
}

func (f KeyFilter) match(r *KeyRecord) bool {
	return (f.Owner == "" || r.Owner == f.Owner) && (f.Tenant == "" || r.Tenant == f.Tenant)
}

var (
	// ErrReadOnlyKey is returned by stores whose key cannot be changed through the API (keys
	// defined in the config file).
	ErrReadOnlyKey = errors.New("authn: this API key is defined in the config file: change it there")
	// ErrKeyNotFound is returned by KeyStore methods for an id that has no record.
	ErrKeyNotFound = errors.New("authn: API key not found")
	// ErrBadGrace is returned by APIKeys.RotateWithGrace for a negative grace or one longer
	// than the configured rotation grace.
	ErrBadGrace = errors.New("authn: rotation grace must be between 0 and the configured rotation_grace")
	// ErrEmptyFilter is returned by KeyStore.List when the filter selects nothing.
	ErrEmptyFilter = errors.New("authn: key filter needs an owner or a tenant")
)

// KeyStore holds API key records. It is the contract between APIKeys and a backend
// (MemoryKeyStore here, redisauth.KeyStore for replicas sharing Redis).
//
// Implementations must be safe for concurrent use and honour ctx for network calls. Errors
// other than ErrKeyNotFound mean the backend failed; APIKeys turns them into Unavailable.
// Key is called on a cache miss only, so it need not be fast; Touch is called from a
// background goroutine.
type KeyStore interface {
	// Key returns the record with this id, or ErrKeyNotFound.
	Key(ctx context.Context, id string) (KeyRecord, error)
	// Put creates or replaces the record rec.ID.
	Put(ctx context.Context, rec KeyRecord) error
	// Revoke sets RevokedAt to at (which may be in the future: a grace period), or returns
	// ErrKeyNotFound. A store shared by replicas tells them (see redisauth).
	Revoke(ctx context.Context, id string, at time.Time) error
	// Touch sets LastUsedAt to at, if the record exists. A missing record is not an error.
	Touch(ctx context.Context, id string, at time.Time) error
	// List returns the records matching f, in no particular order, or ErrEmptyFilter.
	List(ctx context.Context, f KeyFilter) ([]KeyRecord, error)
}

// MemoryKeyStore is a KeyStore in process memory, for a single replica and for tests. The
// zero value is an empty store ready to use. Safe for concurrent use.
type MemoryKeyStore struct {
	mu   sync.RWMutex
	keys map[string]KeyRecord
}

var _ KeyStore = (*MemoryKeyStore)(nil)

// Key implements KeyStore.
func (s *MemoryKeyStore) Key(_ context.Context, id string) (KeyRecord, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.keys[id]
	if !ok {
		return KeyRecord{}, ErrKeyNotFound
	}
	return r, nil
}

// Put implements KeyStore.
func (s *MemoryKeyStore) Put(_ context.Context, rec KeyRecord) error {
	if rec.ID == "" {
		return errors.New("authn: key record without id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys == nil {
		s.keys = make(map[string]KeyRecord)
	}
	s.keys[rec.ID] = rec
	return nil
}

// Revoke implements KeyStore.
func (s *MemoryKeyStore) Revoke(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.keys[id]
	if !ok {
		return ErrKeyNotFound
	}
	r.RevokedAt = at
	s.keys[id] = r
	return nil
}

// Touch implements KeyStore.
func (s *MemoryKeyStore) Touch(_ context.Context, id string, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.keys[id]; ok {
		r.LastUsedAt = at
		s.keys[id] = r
	}
	return nil
}

// List implements KeyStore.
func (s *MemoryKeyStore) List(_ context.Context, f KeyFilter) ([]KeyRecord, error) {
	if f == (KeyFilter{}) {
		return nil, ErrEmptyFilter
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []KeyRecord
	for _, r := range s.keys {
		if f.match(&r) {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b KeyRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}
