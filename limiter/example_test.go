package limiter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
)

func ExampleLimiter() {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := limiter.New(limiter.Config{
		Store: memstore.New(memstore.Options{Now: clock}),
		Now:   clock,
		Domains: []limiter.Domain{{
			Name: "api",
			Descriptors: []limiter.Descriptor{{
				Key: "user", // one counter per user
				RateLimit: &limiter.RateLimit{
					Name: "per_user", Algorithm: limiter.TokenBucket, RequestsPerUnit: 2, Unit: "second",
				},
			}},
		}},
	})
	if err != nil {
		panic(err)
	}
	req := limiter.Request{
		Domain:      "api",
		Descriptors: []limiter.RequestDescriptor{{Entries: []limiter.Entry{{Key: "user", Value: "alice"}}}},
		Cost:        1,
	}
	var res limiter.Result
	for range 3 {
		if err := l.Check(context.Background(), req, &res); err != nil {
			panic(err)
		}
		policy, rateLimit, retryAfter := res.Headers()
		fmt.Printf("allowed=%v RateLimit-Policy: %s RateLimit: %s Retry-After: %q\n", res.Allowed, policy, rateLimit, retryAfter)
	}
	// Output:
	// allowed=true RateLimit-Policy: "per_user";q=2;w=1 RateLimit: "per_user";r=1;t=1 Retry-After: ""
	// allowed=true RateLimit-Policy: "per_user";q=2;w=1 RateLimit: "per_user";r=0;t=1 Retry-After: ""
	// allowed=false RateLimit-Policy: "per_user";q=2;w=1 RateLimit: "per_user";r=0;t=1 Retry-After: "1"
}
