package redisstore_test

import (
	"testing"
	"time"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/limitertest"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestConformance runs the Store conformance suite on one Redis, batched and unbatched, and
// with every lone Take on take.lua's general path (paths). The suite's clock reaches the
// script through Options.Now.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t)
	client := newClient(t, srv.Addr())
	for _, m := range paths {
		t.Run(m.name, func(t *testing.T) {
			limitertest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
				return newStore(t, pathClient(client, m.general), redisstore.Options{Now: now, Unbatched: m.unbatched, Prefix: "conf:" + m.name + ":"})
			})
		})
	}
}
