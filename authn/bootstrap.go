package authn

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/wardenhq/warden/fielderr"
)

// StaticKey is one API key of a static setup, as written in Warden's YAML config (the config
// package decodes it; Records validates it). It holds the key's digest, never the key:
// wardenctl prints the digest of a key it creates (Pepper.DigestAPIKey).
type StaticKey struct {
	// ID is the key id (12 base62 characters). Required, unique; an imported key's is
	// derived from its digest (ImportedKeyID), so it may be left out.
	ID string `yaml:"id" json:"id"`
	// Imported marks a key Warden did not issue: Digest is HMAC-SHA256(pepper, key) over the
	// whole key (Pepper.DigestImported; wardenctl keys digest prints it).
	Imported bool `yaml:"imported" json:"imported"`
	// Env is "live" or "test". Required.
	Env string `yaml:"env" json:"env"`
	// Digest is HMAC-SHA256(pepper, secret) as 64 hex characters. Required.
	Digest string `yaml:"digest" json:"digest"`
	// Owner is the principal's subject. Required.
	Owner  string   `yaml:"owner" json:"owner"`
	Tenant string   `yaml:"tenant" json:"tenant"`
	Roles  []string `yaml:"roles" json:"roles"`
	// Scopes narrow the roles; absent means not narrowed.
	Scopes []string `yaml:"scopes" json:"scopes"`
	Tier   string   `yaml:"tier" json:"tier"`
	// ExpiresAt is when the key stops working; absent means never.
	ExpiresAt time.Time `yaml:"expires" json:"expires"`
}

// StaticKeyRecords validates keys and returns their records, to Put into a KeyStore. Every
// problem is reported as a *fielderr.Error whose path starts with path (e.g.
// "authn.api_keys[2].digest"); several are joined with errors.Join.
func StaticKeyRecords(path string, keys []StaticKey) ([]KeyRecord, error) {
	var errs []error
	bad := func(i int, field, msg string) {
		errs = append(errs, fielderr.New(fmt.Sprintf("%s[%d].%s", path, i, field), errors.New(msg)))
	}
	seen := make(map[string]int, len(keys))
	recs := make([]KeyRecord, 0, len(keys))
	for i, k := range keys {
		rec := KeyRecord{ID: k.ID, Owner: k.Owner, Tenant: k.Tenant, Roles: k.Roles,
			Scopes: k.Scopes, Tier: k.Tier, ExpiresAt: k.ExpiresAt, Imported: k.Imported}
		d, derr := hex.DecodeString(k.Digest)
		if derr == nil && len(d) == len(rec.Digest) {
			copy(rec.Digest[:], d)
			if k.Imported && k.ID == "" {
				rec.ID = ImportedKeyID(rec.Digest)
			}
		} else {
			derr = errors.New("bad digest")
		}
		switch {
		case k.Imported && derr == nil && rec.ID != ImportedKeyID(rec.Digest):
			bad(i, "id", "an imported key's id is derived from its digest: leave it out")
		case k.Imported && derr != nil:
			// reported at the digest
		case !ValidAPIKeyID(rec.ID):
			bad(i, "id", "want 12 base62 characters")
		default:
			if j, dup := seen[rec.ID]; dup {
				bad(i, "id", fmt.Sprintf("duplicate of %s[%d]", path, j))
			}
			seen[rec.ID] = i
		}
		var err error
		if rec.Env, err = ParseEnvironment(k.Env); err != nil {
			bad(i, "env", "want live or test")
		}
		if derr != nil {
			bad(i, "digest", "want 64 hex characters (HMAC-SHA256)")
		}
		if k.Owner == "" {
			bad(i, "owner", "required")
		}
		recs = append(recs, rec)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return recs, nil
}
