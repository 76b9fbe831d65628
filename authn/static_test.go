package authn

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestStaticKeysAreReadOnly(t *testing.T) {
	ctx := context.Background()
	shared := &MemoryKeyStore{}
	if err := shared.Put(ctx, KeyRecord{ID: "dynamic00001", Env: EnvLive, Owner: "bob", Tenant: "acme"}); err != nil {
		t.Fatal(err)
	}
	s := NewStaticKeys(shared, []KeyRecord{{ID: "static000001", Env: EnvLive, Owner: "ops", Tenant: "acme"}})

	if r, err := s.Key(ctx, "static000001"); err != nil || r.Owner != "ops" {
		t.Fatalf("static key: got %+v, %v", r, err)
	}
	if r, err := s.Key(ctx, "dynamic00001"); err != nil || r.Owner != "bob" {
		t.Fatalf("shared key through the overlay: got %+v, %v", r, err)
	}
	if err := s.Revoke(ctx, "static000001", time.Now()); !errors.Is(err, ErrReadOnlyKey) {
		t.Errorf("Revoke of a static key: got %v, want ErrReadOnlyKey", err)
	}
	if err := s.Put(ctx, KeyRecord{ID: "static000001", Owner: "mallory"}); !errors.Is(err, ErrReadOnlyKey) {
		t.Errorf("Put over a static key: got %v, want ErrReadOnlyKey", err)
	}
	if err := s.Touch(ctx, "static000001", time.Now()); err != nil {
		t.Errorf("Touch of a static key: got %v, want nil", err)
	}
	if err := s.Revoke(ctx, "dynamic00001", time.Now()); err != nil {
		t.Errorf("Revoke of a shared key: got %v", err)
	}
	all, err := s.List(ctx, KeyFilter{Tenant: "acme"})
	if err != nil || len(all) != 2 {
		t.Fatalf("List by tenant: got %d keys, %v; want 2 (shared and static)", len(all), err)
	}
	mine, err := s.List(ctx, KeyFilter{Owner: "ops"})
	if err != nil || len(mine) != 1 || mine[0].ID != "static000001" {
		t.Fatalf("List by owner: got %+v, %v; want the static key only", mine, err)
	}
}
