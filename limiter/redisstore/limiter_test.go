package redisstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/redisstore"
)

// TestLimiterFailurePolicies runs limiter.Limiter on this store, kills Redis mid-run and
// checks each domain's failure policy while it is down (through the circuit breaker once it
// opens), then the recovery after a restart.
func TestLimiterFailurePolicies(t *testing.T) {
	srv := redistest.Start(t)
	store := newStore(t, newClient(t, srv.Addr()), redisstore.Options{Timeout: time.Second})
	domain := func(name string, p limiter.FailurePolicy) limiter.Domain {
		return limiter.Domain{Name: name, FailurePolicy: p, Descriptors: []limiter.Descriptor{{
			Key:       "user",
			RateLimit: &limiter.RateLimit{RequestsPerUnit: 4, Period: time.Hour, Algorithm: limiter.FixedWindow},
		}}}
	}
	l, err := limiter.New(limiter.Config{
		Store:              store,
		Fallback:           memstore.New(memstore.Options{}),
		Replicas:           2,
		Domains:            []limiter.Domain{domain("open", limiter.FailOpen), domain("closed", limiter.FailClosed), domain("local", limiter.Local)},
		StoreTimeout:       time.Second, // generous: the machine running tests is shared
		BreakerFailures:    3,
		BreakerCooldown:    100 * time.Millisecond,
		OverLimitCacheSize: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		Allowed bool
		Source  limiter.Source
		Err     error
	}
	check := func(domain string) outcome {
		var res limiter.Result
		err := l.Check(t.Context(), limiter.Request{
			Domain:      domain,
			Descriptors: []limiter.RequestDescriptor{{Entries: []limiter.Entry{{Key: "user", Value: "alice"}}}},
			Cost:        1,
		}, &res)
		if err != nil {
			if !errors.Is(err, limiter.ErrUnavailable) {
				t.Fatalf("%s: Check: %v, want nil or ErrUnavailable", domain, err)
			}
			return outcome{Err: limiter.ErrUnavailable}
		}
		return outcome{Allowed: res.Allowed, Source: res.Statuses[0].Source}
	}
	run := func(domain string, n int) []outcome {
		var got []outcome
		for range n {
			got = append(got, check(domain))
		}
		return got
	}
	repeat := func(o outcome, n int) []outcome {
		r := make([]outcome, n)
		for i := range r {
			r[i] = o
		}
		return r
	}
	fromStore := []outcome{{true, limiter.FromStore, nil}, {true, limiter.FromStore, nil}, {true, limiter.FromStore, nil}, {true, limiter.FromStore, nil}, {false, limiter.FromStore, nil}}
	opts := cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) })

	for _, d := range []string{"open", "closed", "local"} {
		if diff := cmp.Diff(run(d, 5), fromStore, opts); diff != "" {
			t.Errorf("%s, Redis up (-got +want):\n%s", d, diff)
		}
	}

	srv.Stop()
	// The first calls fail in the store and open the breaker; the later ones never reach it.
	// Each policy answers the same way in both cases.
	want := map[string][]outcome{
		"open":   repeat(outcome{true, limiter.FromFailOpen, nil}, 6),
		"closed": repeat(outcome{Err: limiter.ErrUnavailable}, 6),
		// ceil(4 / 2 replicas) in the fallback store.
		"local": {{true, limiter.FromFallback, nil}, {true, limiter.FromFallback, nil}, {false, limiter.FromFallback, nil}, {false, limiter.FromFallback, nil}, {false, limiter.FromFallback, nil}, {false, limiter.FromFallback, nil}},
	}
	for _, d := range []string{"open", "closed", "local"} {
		if diff := cmp.Diff(run(d, 6), want[d], opts); diff != "" {
			t.Errorf("%s, Redis down (-got +want):\n%s", d, diff)
		}
	}

	srv.Restart()
	// After the cooldown a probe reaches the store and closes the breaker.
	var got outcome
	for range 100 {
		if got = check("closed"); got.Err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if diff := cmp.Diff(got, outcome{true, limiter.FromStore, nil}, opts); diff != "" {
		t.Fatalf("closed, after restart (-got +want):\n%s", diff)
	}
	// The restarted Redis is empty: full quotas again, counted in Redis.
	if diff := cmp.Diff(run("closed", 4), fromStore[1:], opts); diff != "" {
		t.Errorf("closed, after restart (-got +want):\n%s", diff)
	}
	for _, d := range []string{"open", "local"} {
		if diff := cmp.Diff(run(d, 5), fromStore, opts); diff != "" {
			t.Errorf("%s, after restart (-got +want):\n%s", d, diff)
		}
	}
}
