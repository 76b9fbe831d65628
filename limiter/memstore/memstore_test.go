package memstore_test

import (
	"testing"
	"time"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/limitertest"
	"github.com/wardenhq/warden/limiter/memstore"
)

func TestConformance(t *testing.T) {
	limitertest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
		return memstore.New(memstore.Options{Now: now})
	})
}

func TestConformanceOneShard(t *testing.T) {
	// Every key in one shard: the lock ordering and same-shard paths.
	limitertest.Run(t, func(t *testing.T, now func() time.Time) limiter.Store {
		return memstore.New(memstore.Options{Now: now, Shards: 1})
	})
}
