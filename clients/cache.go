package clients

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"time"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Defaults of CacheConfig.
const (
	DefaultCacheTTL        = 5 * time.Second
	DefaultCacheMaxEntries = 10000
)

// CacheConfig configures an AuthnCache. The zero value is usable: DefaultCacheTTL,
// DefaultCacheMaxEntries and time.Now.
type CacheConfig struct {
	// TTL is how long a positive authentication is reused: the staleness bound. Default 5 s.
	TTL time.Duration
	// MaxEntries bounds the number of cached principals; the least recently used goes first.
	// Default 10000.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// AuthnCache holds positive authentication results for the interceptors and the middleware
// (WithAuthnCache), so that a repeated credential skips Warden's Authenticate step. Create it
// with NewAuthnCache; it is safe for concurrent use.
//
// What is cached: the principal Warden returned for a credential, keyed by the SHA-256
// digest of everything the request presented (the forwarded credential headers, the peer
// certificate); the credential itself is never kept. Failed authentications are not cached.
// Authorization and rate limits are never cached: a request whose principal comes from the
// cache is still authorized (Authorize with the principal) and rate-limited (CheckRateLimit
// with the principal's tier) by Warden, each request exactly.
//
// Staleness bound: an entry lives for TTL counted from when the Authenticate call that
// filled it was sent (so a slow answer or a retry does not stretch it), and never past the
// principal's expires_at. Within that window a credential revoked in Warden, or a principal
// whose roles changed, is still accepted by this process, unless the application calls
// Invalidate, InvalidateSubject or Flush when it learns of the change. Those hooks are local
// to this process: invalidation across Warden's replicas (Redis pub/sub) happens on Warden's
// side and does not reach the caches of client processes, so TTL is the bound that holds for
// every replica of the service.
type AuthnCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	key     [sha256.Size]byte
	p       *wardenv1.Principal
	expires time.Time
}

// NewAuthnCache returns an empty cache.
func NewAuthnCache(c CacheConfig) *AuthnCache {
	ac := &AuthnCache{ttl: c.TTL, max: c.MaxEntries, now: c.Now}
	if ac.ttl <= 0 {
		ac.ttl = DefaultCacheTTL
	}
	if ac.max <= 0 {
		ac.max = DefaultCacheMaxEntries
	}
	if ac.now == nil {
		ac.now = time.Now
	}
	ac.entries = make(map[[sha256.Size]byte]*list.Element)
	return ac
}

// Len returns the number of entries, expired ones included until they are looked up or
// evicted.
func (c *AuthnCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Flush removes every entry.
func (c *AuthnCache) Flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.entries)
	c.lru.Init()
}

// Invalidate removes the entries whose principal has this credential id (the API key id or
// JWT jti a revocation names), and returns how many it removed.
func (c *AuthnCache) Invalidate(credentialID string) int {
	return c.remove(func(p *wardenv1.Principal) bool { return p.GetCredentialId() == credentialID })
}

// InvalidateSubject removes the entries whose principal has this subject (for example after
// its roles changed), and returns how many it removed.
func (c *AuthnCache) InvalidateSubject(subject string) int {
	return c.remove(func(p *wardenv1.Principal) bool { return p.GetSubject() == subject })
}

// remove drops the entries that match. It scans the whole cache: revocations are rare, and a
// secondary index would cost every insertion.
func (c *AuthnCache) remove(match func(*wardenv1.Principal) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for e := c.lru.Front(); e != nil; {
		next := e.Next()
		if ce := e.Value.(*cacheEntry); match(ce.p) {
			c.lru.Remove(e)
			delete(c.entries, ce.key)
			n++
		}
		e = next
	}
	return n
}

// get returns the live principal cached under key.
func (c *AuthnCache) get(key [sha256.Size]byte) (*wardenv1.Principal, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	ce := e.Value.(*cacheEntry)
	if !now.Before(ce.expires) {
		c.lru.Remove(e)
		delete(c.entries, key)
		return nil, false
	}
	c.lru.MoveToFront(e)
	return ce.p, true
}

// put caches p under key until TTL from asked (when the Authenticate call that returned p was
// sent: Warden's answer reflects its state at some instant after that, so counting from the
// answer's arrival would let an entry outlive a revocation by more than TTL), or p's expiry if
// earlier.
func (c *AuthnCache) put(key [sha256.Size]byte, p *wardenv1.Principal, asked time.Time) {
	now := c.now()
	expires := asked.Add(c.ttl)
	if x := p.GetExpiresAt(); x != nil {
		if t := x.AsTime(); t.Before(expires) {
			expires = t
		}
	}
	if !now.Before(expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[key]; ok {
		ce := e.Value.(*cacheEntry)
		ce.p, ce.expires = p, expires
		c.lru.MoveToFront(e)
		return
	}
	for c.lru.Len() >= c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, p: p, expires: expires})
}

// credentialsDigest is the SHA-256 of every field of creds, each length-prefixed so that no
// two different credentials share an encoding; header names are sorted.
func credentialsDigest(creds *wardenv1.Credentials) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	num := func(v int) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	field := func(s string) {
		num(len(s))
		h.Write([]byte(s))
	}
	field(creds.GetApiKey())
	field(creds.GetBearerToken())
	field(creds.GetPeerCertificate())
	field(creds.GetPeerPrincipal())
	hs := creds.GetHeaders()
	names := make([]string, 0, len(hs))
	for k := range hs {
		names = append(names, k)
	}
	slices.Sort(names)
	num(len(names))
	for _, k := range names {
		field(k)
		field(hs[k])
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}
