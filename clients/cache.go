package clients

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"io"
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
	// TTL is how long an allowed decision is reused: the staleness bound. Default 5 s.
	TTL time.Duration
	// MaxEntries bounds the number of cached principals; the least recently used goes first.
	// Default 10000.
	MaxEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// AuthnCache holds allowed decisions for the interceptors and the middleware
// (WithAuthnCache), so that a repeated request is decided with at most one round trip to
// Warden: a CheckRateLimit when the request has rate limits, none otherwise. Create it with
// NewAuthnCache; it is safe for concurrent use.
//
// What is cached: for a request Warden's Check allowed, the principal and the identity
// headers Warden set or removed, keyed by the SHA-256 digest of everything the decision
// depended on. For a request mapped to an action (WithRequestActions): the forwarded
// credentials (headers, peer certificate), the action and the resource. For a request
// decided by Warden's route table: the credentials, the method, path and host, and every
// forwarded header (a route's rate-limit descriptors may come from any header), and only
// when the route applied no rate limit and no body was forwarded. The credential itself is
// never kept. Denials and failed-open decisions are not cached, and rate limits never are:
// a request decided from the cache has its limits checked by Warden (CheckRateLimit with
// the principal's tier), each request exactly.
//
// Staleness bound: an entry lives for TTL counted from when the Check call that filled it
// was sent (so a slow answer or a retry does not stretch it), and never past the principal's
// expires_at. Within that window a credential revoked in Warden, a principal whose roles
// changed, or a policy reloaded by Warden still gets this process's earlier answer, unless
// the application calls Invalidate, InvalidateSubject or Flush when it learns of the change.
// Those hooks are local to this process: invalidation across Warden's replicas (Redis
// pub/sub) happens on Warden's side and does not reach the caches of client processes, so
// TTL is the bound that holds for every replica of the service.
type AuthnCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     list.List // of *cacheEntry, most recently used first
}

type cacheEntry struct {
	key [sha256.Size]byte
	cached
	expires time.Time
}

// cached is an allowed decision: who, and the identity headers Warden set and removed.
type cached struct {
	p        *wardenv1.Principal
	upstream []*wardenv1.Header
	remove   []string
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
	return c.remove(func(p *wardenv1.Principal) bool { return p != nil && p.GetCredentialId() == credentialID })
}

// InvalidateSubject removes the entries whose principal has this subject (for example after
// its roles changed), and returns how many it removed.
func (c *AuthnCache) InvalidateSubject(subject string) int {
	return c.remove(func(p *wardenv1.Principal) bool { return p != nil && p.GetSubject() == subject })
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

// get returns the live decision cached under key.
func (c *AuthnCache) get(key [sha256.Size]byte) (cached, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return cached{}, false
	}
	ce := e.Value.(*cacheEntry)
	if !now.Before(ce.expires) {
		c.lru.Remove(e)
		delete(c.entries, key)
		return cached{}, false
	}
	c.lru.MoveToFront(e)
	return ce.cached, true
}

// put caches d under key until TTL from asked (when the Check call that returned d was
// sent: Warden's answer reflects its state at some instant after that, so counting from the
// answer's arrival would let an entry outlive a revocation by more than TTL), or p's expiry if
// earlier.
func (c *AuthnCache) put(key [sha256.Size]byte, d cached, asked time.Time) {
	now := c.now()
	expires := asked.Add(c.ttl)
	if x := d.p.GetExpiresAt(); x != nil {
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
		ce.cached, ce.expires = d, expires
		c.lru.MoveToFront(e)
		return
	}
	for c.lru.Len() >= c.max {
		last := c.lru.Back()
		c.lru.Remove(last)
		delete(c.entries, last.Value.(*cacheEntry).key)
	}
	c.entries[key] = c.lru.PushFront(&cacheEntry{key: key, cached: d, expires: expires})
}

// cacheKey is the SHA-256 of everything a decision depends on, each field length-prefixed
// so that no two different requests share an encoding, map keys sorted. It is built only
// when a cache is configured.
type cacheKey struct {
	h hash.Hash
	n [8]byte
}

func newCacheKey(kind string) *cacheKey {
	k := &cacheKey{h: sha256.New()}
	k.field(kind)
	return k
}

func (k *cacheKey) num(v int) {
	binary.BigEndian.PutUint64(k.n[:], uint64(v))
	k.h.Write(k.n[:])
}

func (k *cacheKey) field(s string) {
	k.num(len(s))
	io.WriteString(k.h, s)
}

func (k *cacheKey) fields(m map[string]string) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	slices.Sort(names)
	k.num(len(names))
	for _, n := range names {
		k.field(n)
		k.field(m[n])
	}
}

func (k *cacheKey) credentials(creds *wardenv1.Credentials) *cacheKey {
	k.field(creds.GetApiKey())
	k.field(creds.GetBearerToken())
	k.field(creds.GetPeerCertificate())
	k.field(creds.GetPeerPrincipal())
	k.fields(creds.GetHeaders())
	return k
}

func (k *cacheKey) resource(res *wardenv1.Resource) *cacheKey {
	k.num(btoi(res != nil))
	k.field(res.GetType())
	k.field(res.GetId())
	k.field(res.GetOwner())
	k.field(res.GetTenant())
	k.fields(res.GetAttributes())
	return k
}

func (k *cacheKey) http(r *wardenv1.HttpRequest, grpcMethod string) *cacheKey {
	k.field(grpcMethod)
	k.field(r.GetMethod())
	k.field(r.GetPath())
	k.field(r.GetHost())
	k.fields(r.GetHeaders())
	return k
}

func (k *cacheKey) sum() [sha256.Size]byte {
	var out [sha256.Size]byte
	k.h.Sum(out[:0])
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
