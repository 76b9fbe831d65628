package authn

import (
	"context"
	"time"
)

// StaticKeys serves keys defined in the config file (see StaticKeyRecords) in front of a
// shared KeyStore. Static keys are read-only: Put and Revoke of a static id answer
// ErrReadOnlyKey, Touch does nothing. Build it with NewStaticKeys; it is immutable and safe
// for concurrent use when the underlying store is.
type StaticKeys struct {
	KeyStore
	keys map[string]KeyRecord
}

var _ KeyStore = (*StaticKeys)(nil)

// NewStaticKeys puts recs in front of store.
func NewStaticKeys(store KeyStore, recs []KeyRecord) *StaticKeys {
	s := &StaticKeys{KeyStore: store, keys: make(map[string]KeyRecord, len(recs))}
	for _, r := range recs {
		s.keys[r.ID] = r
	}
	return s
}

// Key implements KeyStore.
func (s *StaticKeys) Key(ctx context.Context, id string) (KeyRecord, error) {
	if r, ok := s.keys[id]; ok {
		return r, nil
	}
	return s.KeyStore.Key(ctx, id)
}

// Put implements KeyStore.
func (s *StaticKeys) Put(ctx context.Context, rec KeyRecord) error {
	if _, ok := s.keys[rec.ID]; ok {
		return ErrReadOnlyKey
	}
	return s.KeyStore.Put(ctx, rec)
}

// Revoke implements KeyStore.
func (s *StaticKeys) Revoke(ctx context.Context, id string, at time.Time) error {
	if _, ok := s.keys[id]; ok {
		return ErrReadOnlyKey
	}
	return s.KeyStore.Revoke(ctx, id, at)
}

// Touch implements KeyStore; last-used times of static keys are not kept.
func (s *StaticKeys) Touch(ctx context.Context, id string, at time.Time) error {
	if _, ok := s.keys[id]; ok {
		return nil
	}
	return s.KeyStore.Touch(ctx, id, at)
}

// List implements KeyStore: the store's matching keys, then the static ones.
func (s *StaticKeys) List(ctx context.Context, f KeyFilter) ([]KeyRecord, error) {
	out, err := s.KeyStore.List(ctx, f)
	if err != nil {
		return nil, err
	}
	for _, r := range s.keys {
		if f.match(&r) {
			out = append(out, r)
		}
	}
	return out, nil
}
