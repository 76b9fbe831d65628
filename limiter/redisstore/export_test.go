package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/limiter"
)

// Script is the Lua source, for tests that look for it on a server.
func Script() string { return takeLua }

// Name is the name of the counter key under tag (its hash's key, then its field; a sliding
// log's sorted set).
func Name(s *Store, tag, key string) string { return s.name(tag, key) }

// FieldLen is the length of a counter's field in its hash.
const FieldLen = fieldLen

// KeySlot is the Cluster slot of a key, as the store computes it to pick a master.
func KeySlot(key string) int { return keySlot(key) }

// BatchTake is one Take of TakeBatch, and its answer.
type BatchTake struct {
	Tag     string
	Hits    []limiter.Hit
	Out     []limiter.Status
	Allowed bool
	Err     error
}

// TakeBatch sends takes as one batch of a batcher would, in this order, on client (a single
// server), and answers each as Take does.
func TakeBatch(ctx context.Context, s *Store, client Client, takes []BatchTake) {
	b := &batchState{group: groupAll}
	if _, ok := client.(*redis.Client); !ok {
		b.group = groupTag
	}
	calls := make([]*call, len(takes))
	for i := range takes {
		c := s.pool.Get().(*call)
		if err := c.build(s, takes[i].Tag, takes[i].Hits); err != nil {
			takes[i].Err = err
			s.pool.Put(c)
			continue
		}
		c.ctx = ctx
		calls[i] = c
		b.calls = append(b.calls, c)
	}
	s.exec(b, client, nil, nil)
	for i, c := range calls {
		if c != nil {
			<-c.done
			takes[i].Allowed, takes[i].Err = s.finish(ctx, c, takes[i].Hits, takes[i].Out)
		}
	}
}

// ScriptArgs returns the arguments of the one script call that takes would make, and each
// Take's error.
func ScriptArgs(s *Store, takes []BatchTake) []any {
	calls := make([]*call, 0, len(takes))
	for i := range takes {
		c := &call{}
		if takes[i].Err = c.build(s, takes[i].Tag, takes[i].Hits); takes[i].Err == nil {
			calls = append(calls, c)
		}
	}
	var a scriptArgs
	return a.build(&s.sha, calls)
}
