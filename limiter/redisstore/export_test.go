package redisstore

import (
	"context"
	"slices"

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

// GeneralPath returns client as a Client whose script calls of one Take of one hit (those of
// an unbatched Store, made by Process) name the Take's spec twice (S = 2, the Take's index
// still 1): the same Take, which take.lua runs on its general path instead of the short path
// of a lone Take.
func GeneralPath(client *redis.Client) Client { return generalPath{client} }

type generalPath struct{ *redis.Client }

func (g generalPath) Process(ctx context.Context, cmd redis.Cmder) error {
	o, ok := cmd.(once)
	args := cmd.Args()
	// "evalsha", sha, 1, the key, now, the TTL, S = 1, the spec, its index.
	const w = len(spec{})
	if !ok || len(args) != 8+w || *args[6].(*int64) != 1 {
		return g.Client.Process(ctx, cmd)
	}
	two := int64(2)
	a := append(append(append(slices.Clone(args[:6]), &two), args[7:7+w]...), args[7:]...)
	c := scriptCmd(ctx, a)
	err := g.Client.Process(ctx, once{c})
	o.SetVal(c.Val())
	o.SetErr(c.Err())
	return err
}
