package jwtauth

import (
	"crypto/sha256"
	"sync"
	"time"
	"unsafe"

	"github.com/wardenhq/warden/authn"
)

const cacheShards = 16

// tokenCache maps the SHA-256 of a verified token to its Principal, and the key that verified
// it, until the token's exp. It is bounded: when a shard is full, an insert evicts the expired entries among a few it looks
// at, or else one of them. Safe for concurrent use.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]cached
	_  [48]byte // keep shards on separate cache lines
}

func newTokenCache(size int) *tokenCache {
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[[sha256.Size]byte]cached)
	}
	return c
}

// digest hashes token without copying it: sha256.Sum256 neither keeps nor changes its input.
func digest(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// cached is one verified token: its principal and the key whose signature it carries.
type cached struct {
	p authn.Principal
	k *jwk
}

// get returns the principal cached for key if it has not expired at now and the key that
// verified it is still in its issuer's set. An entry whose key was withdrawn is dropped: the
// token goes back to full verification, against the current set. The returned value shares
// its slices and map with the cache; Principal is read-only by contract.
func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (authn.Principal, bool) {
	sh := &c.shards[key[0]%cacheShards]
	sh.mu.Lock()
	e, ok := sh.m[key]
	if ok && (!now.Before(e.p.ExpiresAt) || e.k.withdrawn.Load()) {
		delete(sh.m, key)
		ok = false
	}
	sh.mu.Unlock()
	return e.p, ok
}

// put caches p, verified by k.
func (c *tokenCache) put(key [sha256.Size]byte, p authn.Principal, k *jwk, now time.Time) {
	if !now.Before(p.ExpiresAt) {
		return
	}
	sh := &c.shards[key[0]%cacheShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[key]; !ok && len(sh.m) >= c.perShard {
		n, evicted := 0, false
		var victim [sha256.Size]byte
		for k, e := range sh.m { // map order is random enough for eviction
			if !now.Before(e.p.ExpiresAt) || e.k.withdrawn.Load() {
				delete(sh.m, k)
				evicted = true
			} else if n == 0 {
				victim = k
			}
			if n++; n == 8 {
				break
			}
		}
		if !evicted {
			delete(sh.m, victim)
		}
	}
	sh.m[key] = cached{p, k}
}
