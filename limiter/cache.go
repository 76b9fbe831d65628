package limiter

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// overCache remembers counters known to be over their limit until an instant, so that
// requests on them are refused without a store call. It holds at most max entries: when full,
// expired entries are dropped, and if none has expired the new entry is not kept.
type overCache struct {
	seed   maphash.Seed
	max    int64
	n      atomic.Int64
	shards [16]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[kv]cacheEntry
}

type cacheEntry struct {
	until   int64 // unix nanoseconds: refused until then
	resetAt int64 // unix nanoseconds: the counter is full again then
}

func newOverCache(max int) *overCache {
	c := &overCache{seed: maphash.MakeSeed(), max: int64(max)}
	for i := range c.shards {
		c.shards[i].m = make(map[kv]cacheEntry)
	}
	return c
}

func (c *overCache) empty() bool { return c.n.Load() == 0 }

func (c *overCache) shard(key string) *cacheShard {
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

func (c *overCache) get(tag, key string, now time.Time) (cacheEntry, bool) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.m[kv{tag, key}]
	if !ok {
		return e, false
	}
	if now.UnixNano() >= e.until {
		delete(sh.m, kv{tag, key})
		c.n.Add(-1)
		return e, false
	}
	return e, true
}

func (c *overCache) put(tag, key string, e cacheEntry, now time.Time) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[kv{tag, key}]; ok {
		sh.m[kv{tag, key}] = e
		return
	}
	if c.n.Load() >= c.max {
		t := now.UnixNano()
		for k, old := range sh.m {
			if t >= old.until {
				delete(sh.m, k)
				c.n.Add(-1)
			}
		}
		if c.n.Load() >= c.max {
			return
		}
	}
	sh.m[kv{tag, key}] = e
	c.n.Add(1)
}

func (c *overCache) remove(tag, key string) {
	sh := c.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[kv{tag, key}]; ok {
		delete(sh.m, kv{tag, key})
		c.n.Add(-1)
	}
}
