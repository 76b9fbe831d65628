package service_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/redisstore"
	"github.com/wardenhq/warden/service"
)

func domains() []limiter.Domain {
	return []limiter.Domain{{
		Name: "api",
		Descriptors: []limiter.Descriptor{
			{Key: "key", RateLimit: &limiter.RateLimit{Name: "per_key", Unit: "hour", RequestsPerUnit: 50, Algorithm: limiter.FixedWindow}},
			{Key: "tenant", RateLimit: &limiter.RateLimit{Name: "per_tenant", Unit: "hour", RequestsPerUnit: 3, Algorithm: limiter.SlidingWindow}},
			{Key: "shadow", ShadowMode: true, RateLimit: &limiter.RateLimit{Name: "shadowed", Unit: "hour", RequestsPerUnit: 1}},
		},
	}, {
		Name:          "strict",
		FailurePolicy: limiter.FailClosed,
		Descriptors:   []limiter.Descriptor{{Key: "key", RateLimit: &limiter.RateLimit{Unit: "hour", RequestsPerUnit: 5}}},
	}}
}

func limiterServer(t *testing.T, store limiter.Store) wardenv1.WardenServiceClient {
	t.Helper()
	// A generous store deadline: these tests are about answers and failure policies, and the
	// 5 ms default can pass while a Redis call loads the script on a machine busy with -race.
	l, err := limiter.New(limiter.Config{Store: store, Domains: domains(), Logger: quietLogger(), BreakerFailures: 1000,
		StoreTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Limiter: l}}))
}

func desc(kv ...string) *wardenv1.RateLimitDescriptor {
	d := &wardenv1.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &wardenv1.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func TestCheckRateLimitExactUnderConcurrency(t *testing.T) {
	c := limiterServer(t, memstore.New(memstore.Options{}))
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 20; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				resp, err := c.CheckRateLimit(context.Background(), &wardenv1.CheckRateLimitRequest{
					Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("key", "k1")}})
				if err != nil {
					t.Error(err)
					return
				}
				if resp.Allowed {
					allowed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Fatalf("admitted %d of 200 concurrent requests, want exactly 50", got)
	}
}

func TestCheckRateLimitResponse(t *testing.T) {
	c := limiterServer(t, memstore.New(memstore.Options{}))
	ctx := context.Background()
	call := func(cost *int64, ds ...*wardenv1.RateLimitDescriptor) *wardenv1.CheckRateLimitResponse {
		t.Helper()
		resp, err := c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: ds, Cost: cost})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Peek consumes nothing.
	for i := 0; i < 5; i++ {
		if r := call(proto.Int64(0), desc("tenant", "acme")); !r.Allowed || r.Statuses[0].Remaining != 3 {
			t.Fatalf("peek %d: got %v, want allowed with 3 remaining", i, r)
		}
	}
	// Cost 2 then 1 exhausts a limit of 3.
	if r := call(proto.Int64(2), desc("tenant", "acme")); !r.Allowed || r.Statuses[0].Remaining != 1 {
		t.Fatalf("cost 2: got %v, want 1 remaining", r)
	}
	r := call(nil, desc("key", "k2"), desc("tenant", "acme"))
	if !r.Allowed || len(r.Statuses) != 2 {
		t.Fatalf("two descriptors: got %v", r)
	}
	// Over: the other descriptor is not consumed (all or nothing).
	r = call(nil, desc("key", "k2"), desc("tenant", "acme"))
	if r.Allowed {
		t.Fatalf("over the tenant limit: got allowed")
	}
	if r.Statuses[1].Code != wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT || r.Statuses[1].RetryAfter.AsDuration() <= 0 {
		t.Errorf("over-limit status: got %v", r.Statuses[1])
	}
	if got := call(proto.Int64(0), desc("key", "k2")).Statuses[0].Remaining; got != 49 {
		t.Errorf("per-key remaining after a denied request: got %d, want 49 (denied consumes nothing)", got)
	}
	headers := map[string]string{}
	for _, h := range r.Headers {
		headers[h.Name] = h.Value
	}
	if !strings.Contains(headers["RateLimit-Policy"], `"per_tenant";q=3;w=3600`) || headers["Retry-After"] == "" || !strings.Contains(headers["RateLimit"], `"per_tenant";r=0`) {
		t.Errorf("headers: got %v", headers)
	}
	// A sliding window's retry can pass the period: the previous window's weight must decay.
	if r.RetryAfter.AsDuration() <= 0 || r.RetryAfter.AsDuration() > 2*time.Hour {
		t.Errorf("retry_after: got %v", r.RetryAfter.AsDuration())
	}
	// Shadow mode never denies, but reports.
	for i := 0; i < 3; i++ {
		if r := call(nil, desc("shadow", "s")); !r.Allowed {
			t.Fatalf("shadow mode request %d denied", i)
		}
	}
	// Unknown domains and descriptors are allowed with no limit, as envoyproxy/ratelimit does.
	resp, err := c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: "nope", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b")}})
	if err != nil || !resp.Allowed || len(resp.Statuses) != 0 {
		t.Errorf("unknown domain: got %v, %v; want allowed with no status", resp, err)
	}
}

func TestCheckRateLimitInvalid(t *testing.T) {
	c := limiterServer(t, memstore.New(memstore.Options{}))
	long := strings.Repeat("x", 2000)
	for name, req := range map[string]*wardenv1.CheckRateLimitRequest{
		"no domain":      {Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b")}},
		"no descriptors": {Domain: "api"},
		"empty entries":  {Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{{}}},
		"empty key":      {Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("", "b")}},
		"long value":     {Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", long)}},
		"negative cost":  {Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b")}, Cost: proto.Int64(-1)},
	} {
		if _, err := c.CheckRateLimit(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT", name, err)
		}
	}
}

func TestCheckRateLimitFailClosedWhenRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rc.Close() })
	store, err := redisstore.New(rc, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c := limiterServer(t, store)
	req := &wardenv1.CheckRateLimitRequest{Domain: "strict", Descriptors: []*wardenv1.RateLimitDescriptor{desc("key", "k")}}
	if resp, err := c.CheckRateLimit(context.Background(), req); err != nil || !resp.Allowed {
		t.Fatalf("Redis up: got %v, %v", resp, err)
	}
	srv.Stop()
	if _, err := c.CheckRateLimit(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("Redis down, fail_closed: got %v, want UNAVAILABLE", err)
	}
	// Asked for a decision (the Envoy adapter does): a denial marked store_unavailable, with
	// Retry-After, not the error.
	req.UnavailableAsDenial = true
	resp, err := c.CheckRateLimit(context.Background(), req)
	if err != nil || resp.Allowed || len(resp.Statuses) != 1 || !resp.Statuses[0].StoreUnavailable ||
		resp.Statuses[0].Code != wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT || resp.RetryAfter.AsDuration() != time.Second ||
		!hasHeader(resp.Headers, "Retry-After", "1") {
		t.Fatalf("Redis down, fail_closed, unavailable_as_denial: got %v, %v; want a denial marked store_unavailable, Retry-After 1", resp, err)
	}
	// fail_open (domain api) still answers, marked store_unavailable.
	resp, err = c.CheckRateLimit(context.Background(), &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("key", "k")}})
	if err != nil || !resp.Allowed || len(resp.Statuses) != 1 || !resp.Statuses[0].StoreUnavailable {
		t.Fatalf("Redis down, fail_open: got %v, %v; want allowed, marked store_unavailable", resp, err)
	}
}

func hasHeader(hs []*wardenv1.Header, name, value string) bool {
	for _, h := range hs {
		if h.GetName() == name && h.GetValue() == value {
			return true
		}
	}
	return false
}

// TestCheckRateLimitInvalidFieldPaths: what a limit means is validated once, by
// limiter.Check, and its field paths name the caller's fields, index included.
func TestCheckRateLimitInvalidFieldPaths(t *testing.T) {
	c := limiterServer(t, memstore.New(memstore.Options{}))
	neg := desc("a", "b")
	neg.Cost = proto.Int64(-2)
	badOverride := desc("a", "b")
	badOverride.Limit = &wardenv1.RateLimitDescriptor_LimitOverride{RequestsPerUnit: -1, Window: durationpb.New(time.Second)}
	noWindow := desc("a", "b")
	noWindow.Limit = &wardenv1.RateLimitDescriptor_LimitOverride{RequestsPerUnit: 5}
	for _, tc := range []struct {
		name  string
		req   *wardenv1.CheckRateLimitRequest
		field string
	}{
		{"negative cost", &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b")}, Cost: proto.Int64(-1)}, "cost"},
		{"empty second descriptor", &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b"), {}}}, "descriptors[1].entries"},
		{"negative cost of the second descriptor", &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b"), neg}}, "descriptors[1].cost"},
		{"negative override", &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{badOverride}}, "descriptors[0].limit"},
		{"override without a window", &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{desc("a", "b"), noWindow}}, "descriptors[1].limit.window"},
	} {
		_, err := c.CheckRateLimit(context.Background(), tc.req)
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT", tc.name, err)
			continue
		}
		var field string
		for _, d := range st.Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				field = br.FieldViolations[0].Field
			}
		}
		if field != tc.field {
			t.Errorf("%s: field %q (%s), want %q", tc.name, field, st.Message(), tc.field)
		}
	}
}
