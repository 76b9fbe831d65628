package redisstore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestLostReplyCountsOnce: the reply to a Take's script call is lost with its connection after
// Redis ran the script. A client that retries (go-redis's default MaxRetries is 3) must not send
// the script again: that would count the Take twice. The Take fails (the Limiter's failure
// policy decides), Redis ran one script call, and the counter holds exactly one Take.
func TestLostReplyCountsOnce(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv := redistest.Start(t)
			direct := newClient(t, srv.Addr())
			proxy := redistest.StartLoseReply(t, srv.Addr(), "evalsha")
			c := redis.NewClient(&redis.Options{Addr: proxy, MaxRetries: 3, DialTimeout: time.Second, ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = c.Close() })
			s := newStore(t, c, redisstore.Options{Unbatched: m.unbatched})
			if err := s.Load(t.Context()); err != nil {
				t.Fatal(err)
			}
			lim := limiter.Limit{Algorithm: limiter.FixedWindow, Limit: 10, Period: time.Hour}
			hits := []limiter.Hit{{Key: "k", Limit: lim, Cost: 1}}
			out := make([]limiter.Status, 1)
			before := scriptCalls(t, direct)
			if _, err := s.Take(t.Context(), "tag", hits, out); err == nil {
				t.Fatalf("Take whose reply was lost = %+v, nil; want an error", out[0])
			}
			if n := scriptCalls(t, direct) - before; n != 1 {
				t.Fatalf("Redis ran %d script calls for one Take whose reply was lost, want 1", n)
			}
			if _, err := s.Take(t.Context(), "tag", hits, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Remaining != 8 {
				t.Fatalf("after a lost Take and one more, remaining = %d, want 8 (each counted once)", out[0].Remaining)
			}
		})
	}
}
