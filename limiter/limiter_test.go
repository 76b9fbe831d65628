package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/limitertest"
	"github.com/wardenhq/warden/limiter/memstore"

	"github.com/wardenhq/warden/fielderr"
)

var base = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// clock is the test's time grid: stores and limiter read it, the test moves it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) at(d time.Duration) {
	c.mu.Lock()
	c.t = base.Add(d)
	c.mu.Unlock()
}

// recorder wraps a store and records the calls that reach it.
type recorder struct {
	limiter.Store
	mu    sync.Mutex
	calls int
	tags  []string
	keys  []string
}

func (r *recorder) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	r.mu.Lock()
	r.calls++
	r.tags = append(r.tags, tag)
	for _, h := range hits {
		r.keys = append(r.keys, h.Key)
	}
	r.mu.Unlock()
	return r.Store.Take(ctx, tag, hits, out)
}

// NonBlocking forwards the wrapped store's marker: without it the limiter would put a
// StoreTimeout deadline on in-process Takes, and under CPU load an expired one would be
// decided by the failure policy instead of the store.
func (r *recorder) NonBlocking() bool {
	nb, ok := r.Store.(limiter.NonBlocking)
	return ok && nb.NonBlocking()
}

func (r *recorder) Reset(ctx context.Context, tag, key string) error {
	return r.Store.(limiter.Resetter).Reset(ctx, tag, key)
}

func rl(n int64, unit string) *limiter.RateLimit {
	return &limiter.RateLimit{Unit: unit, RequestsPerUnit: n, Algorithm: limiter.FixedWindow}
}

func newLimiter(t *testing.T, c *clock, domains []limiter.Domain, opts ...func(*limiter.Config)) (*limiter.Limiter, *recorder) {
	t.Helper()
	rec := &recorder{Store: memstore.New(memstore.Options{Now: c.now})}
	cfg := limiter.Config{Store: rec, Domains: domains, Now: c.now}
	for _, o := range opts {
		o(&cfg)
	}
	l, err := limiter.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l, rec
}

func desc(kvs ...string) limiter.RequestDescriptor {
	var d limiter.RequestDescriptor
	for i := 0; i+1 < len(kvs); i += 2 {
		d.Entries = append(d.Entries, limiter.Entry{Key: kvs[i], Value: kvs[i+1]})
	}
	return d
}

func check(t *testing.T, l *limiter.Limiter, req limiter.Request) limiter.Result {
	t.Helper()
	var res limiter.Result
	if err := l.Check(context.Background(), req, &res); err != nil {
		t.Fatalf("Check(%+v): %v", req, err)
	}
	return res
}

// admitted sends n requests and counts the allowed ones.
func admitted(t *testing.T, l *limiter.Limiter, req limiter.Request, n int) int {
	t.Helper()
	got := 0
	for range n {
		if check(t, l, req).Allowed {
			got++
		}
	}
	return got
}

// envoyDomain is a configuration in envoyproxy/ratelimit's shape.
func envoyDomain() limiter.Domain {
	return limiter.Domain{
		Name: "edge",
		Descriptors: []limiter.Descriptor{
			{Key: "remote_address", RateLimit: rl(3, "second")},
			{Key: "path", Value: "/login", RateLimit: rl(1, "minute")},
			{Key: "path", Value: "/api/*", RateLimit: rl(5, "minute")},
			{Key: "path", RateLimit: rl(10, "minute")},
			{Key: "tenant", Descriptors: []limiter.Descriptor{
				{Key: "user", RateLimit: rl(2, "hour")},
				{Key: "user", Value: "vip", RateLimit: &limiter.RateLimit{Unlimited: true, Name: "vip"}},
			}},
			{Key: "shared", Value: "s*", ShareThreshold: true, RateLimit: rl(2, "hour")},
		},
	}
}

func TestResolution(t *testing.T) {
	for _, tc := range []struct {
		name  string
		d     limiter.RequestDescriptor
		n     int
		want  int
		limit int64 // 0: no limit applies
	}{
		{"value-less key", desc("remote_address", "10.0.0.1"), 5, 3, 3},
		{"exact value beats wildcard and key", desc("path", "/login"), 3, 1, 1},
		{"wildcard beats key", desc("path", "/api/users"), 7, 5, 5},
		{"value-less key for other values", desc("path", "/other"), 12, 10, 10},
		{"nested", desc("tenant", "t1", "user", "u1"), 4, 2, 2},
		{"nested exact unlimited", desc("tenant", "t1", "user", "vip"), 50, 50, 0},
		{"a prefix of entries has no limit", desc("tenant", "t1"), 50, 50, 0},
		{"more entries than the tree", desc("remote_address", "10.0.0.1", "x", "y"), 50, 50, 0},
		{"unknown key", desc("nope", "x"), 50, 50, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: base}
			l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()})
			req := limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{tc.d}}
			if got := admitted(t, l, req, tc.n); got != tc.want {
				t.Errorf("got %d of %d admitted, want %d", got, tc.n, tc.want)
			}
			if got := check(t, l, req).Statuses[0].Quota; got != tc.limit {
				t.Errorf("quota: got %d, want %d", got, tc.limit)
			}
		})
	}
}

func TestCountersPerValue(t *testing.T) {
	c := &clock{t: base}
	l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()})
	r := func(kvs ...string) limiter.Request {
		return limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc(kvs...)}}
	}
	for _, tc := range []struct {
		req  limiter.Request
		want int
	}{
		{r("remote_address", "a"), 3},
		{r("remote_address", "b"), 3}, // one counter per value
		{r("path", "/api/x"), 5},
		{r("path", "/api/y"), 5}, // wildcard: one counter per value
		{r("shared", "s1"), 2},
		{r("shared", "s2"), 0}, // share_threshold: one counter for the pattern
		{r("tenant", "t1", "user", "u"), 2},
		{r("tenant", "t2", "user", "u"), 2}, // the whole entry list is the key
	} {
		if got := admitted(t, l, tc.req, 6); got != tc.want {
			t.Errorf("%+v: got %d admitted, want %d", tc.req.Descriptors[0].Entries, got, tc.want)
		}
	}
	// The window resets at the boundary.
	c.at(time.Second)
	if got := admitted(t, l, r("remote_address", "a"), 6); got != 3 {
		t.Errorf("next second: got %d admitted, want 3", got)
	}
}

func TestUnknownDomain(t *testing.T) {
	c := &clock{t: base}
	l, rec := newLimiter(t, c, []limiter.Domain{envoyDomain()})
	res := check(t, l, limiter.Request{Domain: "nope", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("remote_address", "a")}})
	if !res.Allowed || len(res.Statuses) != 1 || res.Statuses[0].Applied {
		t.Errorf("unknown domain: got %+v, want allowed, one status with no limit", res)
	}
	if rec.calls != 0 {
		t.Errorf("unknown domain: got %d store calls, want 0", rec.calls)
	}
}

func TestTiersAndAlgorithms(t *testing.T) {
	c := &clock{t: base}
	d := limiter.Domain{Name: "api", Descriptors: []limiter.Descriptor{{
		Key: "user",
		RateLimit: &limiter.RateLimit{
			Name: "per_user", Algorithm: limiter.TokenBucket, RequestsPerUnit: 10, Period: 90 * time.Second, Burst: 4,
			Tiers: map[string]limiter.TierLimit{
				"paid":       {RequestsPerUnit: 100, Burst: 40},
				"enterprise": {Unlimited: true},
				"daily":      {RequestsPerUnit: 7, Unit: "day"},
			},
		},
	}}}
	l, _ := newLimiter(t, c, []limiter.Domain{d})
	for _, tc := range []struct {
		tier, user string
		want       int
	}{
		{"", "u1", 4},
		{"free", "u2", 4}, // an unknown tier gets the base limit
		{"paid", "u3", 40},
		{"enterprise", "u4", 60},
		{"daily", "u5", 7},
	} {
		req := limiter.Request{Domain: "api", Tier: tc.tier, Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("user", tc.user)}}
		if got := admitted(t, l, req, 60); got != tc.want {
			t.Errorf("tier %q: got %d of 60 admitted, want %d", tc.tier, got, tc.want)
		}
	}
	// The base bucket refills one token per 9 s.
	c.at(9 * time.Second)
	req := limiter.Request{Domain: "api", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("user", "u1")}}
	if got := admitted(t, l, req, 5); got != 1 {
		t.Errorf("after 9s: got %d admitted, want 1", got)
	}
}

func TestCostAndPeek(t *testing.T) {
	c := &clock{t: base}
	l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()})
	path := desc("path", "/x") // 10 per minute
	addr := desc("remote_address", "a")
	addr.Cost, addr.HasCost = 1, true
	res := check(t, l, limiter.Request{Domain: "edge", Cost: 4, Descriptors: []limiter.RequestDescriptor{path, addr}})
	if !res.Allowed || res.Statuses[0].Remaining != 6 || res.Statuses[1].Remaining != 2 {
		t.Fatalf("cost 4 with an override of 1: got %+v, want remaining 6 and 2", res.Statuses)
	}
	for range 3 {
		res = check(t, l, limiter.Request{Domain: "edge", Cost: 0, Descriptors: []limiter.RequestDescriptor{path}})
		if !res.Allowed || res.Statuses[0].Remaining != 6 {
			t.Fatalf("peek: got %+v, want allowed, remaining 6", res.Statuses[0])
		}
	}
	res = check(t, l, limiter.Request{Domain: "edge", Cost: 7, Descriptors: []limiter.RequestDescriptor{path}})
	if res.Allowed || res.Statuses[0].Code != limiter.CodeOverLimit || res.Statuses[0].Remaining != 6 {
		t.Fatalf("cost 7 of 6 left: got %+v, want over limit, remaining 6", res.Statuses[0])
	}
	var res2 limiter.Result
	err := l.Check(context.Background(), limiter.Request{Domain: "edge", Cost: -1, Descriptors: []limiter.RequestDescriptor{path}}, &res2)
	var re *limiter.RequestError
	if !errors.As(err, &re) || re.Field != "cost" || !errors.Is(err, limiter.ErrInvalidRequest) {
		t.Errorf("negative cost: got %v, want a RequestError on cost", err)
	}
	err = l.Check(context.Background(), limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{path, {}}}, &res2)
	if !errors.As(err, &re) || re.Field != "descriptors[1].entries" {
		t.Errorf("empty descriptor: got %v, want a RequestError on descriptors[1].entries", err)
	}
}

func TestAllOrNothingAndShadow(t *testing.T) {
	c := &clock{t: base}
	d := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "a", RateLimit: rl(10, "minute")},
		{Key: "b", RateLimit: rl(2, "minute")},
		{Key: "s", RateLimit: rl(1, "minute"), ShadowMode: true},
	}}
	l, _ := newLimiter(t, c, []limiter.Domain{d})
	ab := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("a", "x"), desc("b", "x")}}
	if got := admitted(t, l, ab, 5); got != 2 {
		t.Fatalf("a and b: got %d admitted, want 2", got)
	}
	// b refused three times: a was not consumed by them.
	a := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("a", "x")}}
	if got := admitted(t, l, a, 10); got != 8 {
		t.Fatalf("a alone after: got %d admitted, want 8", got)
	}

	// A shadow limit over its limit never denies, and does not keep the others from counting.
	as := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("a", "y"), desc("s", "y")}}
	for i := range 4 {
		res := check(t, l, as)
		if !res.Allowed {
			t.Fatalf("request %d with a shadow limit: denied %+v", i, res.Statuses)
		}
		wantCode := limiter.CodeOK
		if i > 0 {
			wantCode = limiter.CodeOverLimit
		}
		if s := res.Statuses[1]; s.Code != wantCode || !s.Shadow {
			t.Fatalf("request %d: shadow status %+v, want code %v, shadow", i, s, wantCode)
		}
		if s := res.Statuses[0]; s.Code != limiter.CodeOK || s.Remaining != int64(9-i) {
			t.Fatalf("request %d: a's status %+v, want OK, remaining %d", i, s, 9-i)
		}
		if res.RetryAfter() != 0 || res.RetryAfterSeconds() != 0 {
			t.Fatalf("request %d: retry %v for an allowed request", i, res.RetryAfter())
		}
	}
}

func TestReplaces(t *testing.T) {
	c := &clock{t: base}
	d := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "user", RateLimit: &limiter.RateLimit{Name: "per_user", Unit: "minute", RequestsPerUnit: 2, Algorithm: limiter.FixedWindow}},
		{Key: "bot", Value: "crawler", RateLimit: &limiter.RateLimit{Name: "crawler", Unit: "minute", RequestsPerUnit: 5, Algorithm: limiter.FixedWindow, Replaces: []string{"per_user"}}},
	}}
	l, _ := newLimiter(t, c, []limiter.Domain{d})
	req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("user", "u"), desc("bot", "crawler")}}
	if got := admitted(t, l, req, 8); got != 5 {
		t.Errorf("per_user replaced by crawler: got %d admitted, want 5", got)
	}
	res := check(t, l, req)
	if res.Statuses[0].Applied || !res.Statuses[1].Applied || res.Statuses[1].Name != "crawler" {
		t.Errorf("statuses: got %+v, want the first not applied, the second crawler", res.Statuses)
	}
	alone := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("user", "u")}}
	if got := admitted(t, l, alone, 4); got != 2 {
		t.Errorf("per_user alone: got %d admitted, want 2 (not consumed while replaced)", got)
	}
}

func TestHeaders(t *testing.T) {
	c := &clock{t: base.Add(250 * time.Millisecond)}
	d := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "k", RateLimit: &limiter.RateLimit{Name: "burst", Unit: "second", RequestsPerUnit: 10, Algorithm: limiter.FixedWindow}},
		{Key: "k2", RateLimit: &limiter.RateLimit{Name: `da"ily`, Unit: "day", RequestsPerUnit: 1000, Algorithm: limiter.FixedWindow}},
		{Key: "k3", RateLimit: rl(1, "second"), ShadowMode: true},
	}}
	l, _ := newLimiter(t, c, []limiter.Domain{d})
	req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("k", "v"), desc("k2", "v"), desc("k3", "v")}}
	var res limiter.Result
	for range 7 {
		res = check(t, l, req)
	}
	policy, rate, retry := res.Headers()
	want := []string{`"burst";q=10;w=1, "da\"ily";q=1000;w=86400`, `"burst";r=3;t=1, "da\"ily";r=993;t=86400`, ""}
	if diff := cmp.Diff(want, []string{policy, rate, retry}); diff != "" {
		t.Errorf("allowed: headers (-want +got):\n%s", diff)
	}
	if lim, rem, reset, ok := res.XRateLimit(); !ok || lim != 10 || rem != 3 || reset != 1 {
		t.Errorf("allowed: XRateLimit() = %d %d %d %v, want the burst limit's 10 3 1", lim, rem, reset, ok)
	}
	for range 4 {
		res = check(t, l, req)
	}
	policy, rate, retry = res.Headers()
	want = []string{`"burst";q=10;w=1, "da\"ily";q=1000;w=86400`, `"burst";r=0;t=1, "da\"ily";r=990;t=86400`, "1"}
	if diff := cmp.Diff(want, []string{policy, rate, retry}); diff != "" {
		t.Errorf("denied: headers (-want +got):\n%s", diff)
	}
	if lim, rem, reset, ok := res.XRateLimit(); !ok || lim != 10 || rem != 0 || reset != 1 {
		t.Errorf("denied: XRateLimit() = %d %d %d %v, want the burst limit's 10 0 1", lim, rem, reset, ok)
	}
	for in, want := range map[string]limiter.HeaderStyle{"ietf": limiter.HeadersIETF, "x-ratelimit": limiter.HeadersXRateLimit, "both": limiter.HeadersBoth} {
		if got, ok := limiter.ParseHeaderStyle(in); !ok || got != want {
			t.Errorf("ParseHeaderStyle(%q) = %v %v", in, got, ok)
		}
	}
	if _, ok := limiter.ParseHeaderStyle("X-RateLimit"); ok {
		t.Errorf("ParseHeaderStyle is case-sensitive, as the config is")
	}
	if got := res.RetryAfter(); got != 750*time.Millisecond {
		t.Errorf("RetryAfter: got %v, want 750ms", got)
	}
}

func TestOverLimitCache(t *testing.T) {
	c := &clock{t: base}
	d := limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{
		{Key: "k", RateLimit: &limiter.RateLimit{Unit: "second", RequestsPerUnit: 2, Algorithm: limiter.TokenBucket}},
		{Key: "other", RateLimit: rl(100, "second")},
	}}
	l, rec := newLimiter(t, c, []limiter.Domain{d})
	req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("k", "v"), desc("other", "o")}}
	if got := admitted(t, l, req, 3); got != 2 {
		t.Fatalf("got %d admitted, want 2", got)
	}
	calls := rec.calls
	res := check(t, l, req)
	if res.Allowed || rec.calls != calls {
		t.Fatalf("known over limit: allowed %v, %d store calls, want denied with none", res.Allowed, rec.calls-calls)
	}
	want := []limiter.DescriptorStatus{
		{Code: limiter.CodeOverLimit, Applied: true, Name: "d.k", Remaining: 0, RetryAfter: 500 * time.Millisecond, ResetAfter: time.Second, Source: limiter.FromCache},
		{Code: limiter.CodeOK, Applied: true, Name: "d.other", Remaining: -1, Source: limiter.FromCache},
	}
	if diff := cmp.Diff(want, res.Statuses, cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".Limit" || f == ".Quota"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("cached statuses (-want +got):\n%s", diff)
	}
	// Until one token is back (500 ms), no store call; then the store again.
	c.at(499 * time.Millisecond)
	check(t, l, req)
	if rec.calls != calls {
		t.Fatalf("at 499ms: got %d store calls, want 0", rec.calls-calls)
	}
	c.at(500 * time.Millisecond)
	if res := check(t, l, req); !res.Allowed || rec.calls != calls+1 {
		t.Fatalf("at 500ms: allowed %v after %d store calls, want allowed after 1", res.Allowed, rec.calls-calls)
	}
	// A peek is never answered from the cache.
	check(t, l, req)
	calls = rec.calls
	check(t, l, limiter.Request{Domain: "d", Cost: 0, Descriptors: req.Descriptors})
	if rec.calls != calls+1 {
		t.Errorf("peek: got %d store calls, want 1", rec.calls-calls)
	}
}

func TestHashTag(t *testing.T) {
	c := &clock{t: base}
	domains := []limiter.Domain{envoyDomain(), {Name: "tenants", HashTagKey: "tenant", Descriptors: []limiter.Descriptor{
		{Key: "tenant", Descriptors: []limiter.Descriptor{{Key: "user", RateLimit: rl(5, "minute")}}},
	}}}
	l, rec := newLimiter(t, c, domains)
	check(t, l, limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("remote_address", "a")}})
	check(t, l, limiter.Request{Domain: "tenants", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("tenant", "acme", "user", "u")}})
	if diff := cmp.Diff([]string{"edge", "acme"}, rec.tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	// Keys are deterministic: domain, entries, algorithm and period.
	want := []string{"edge|remote_address=a|f1000000", "tenants|tenant=acme|user=u|f60000000"}
	if diff := cmp.Diff(want, rec.keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
}

func TestAdmin(t *testing.T) {
	c := &clock{t: base}
	l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()})
	ctx := context.Background()
	req := limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("tenant", "t", "user", "u")}}
	admitted(t, l, req, 2)
	st, err := l.Peek(ctx, "edge", "", req.Descriptors[0].Entries)
	if err != nil || st.Remaining != 0 || st.Quota != 2 || st.Code != limiter.CodeOK {
		t.Fatalf("Peek: got %+v, %v, want remaining 0 of 2", st, err)
	}
	if admitted(t, l, req, 1) != 0 {
		t.Fatalf("over the limit: admitted")
	}
	if err := l.Reset(ctx, "edge", req.Descriptors[0].Entries); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if st, _ := l.Peek(ctx, "edge", "", req.Descriptors[0].Entries); st.Remaining != 2 {
		t.Fatalf("Peek after Reset: remaining %d, want 2", st.Remaining)
	}
	// The over-limit cache forgot it too.
	if got := admitted(t, l, req, 3); got != 2 {
		t.Fatalf("after Reset: got %d admitted, want 2", got)
	}
	if _, err := l.Peek(ctx, "edge", "", []limiter.Entry{{Key: "nope", Value: "x"}}); !errors.Is(err, limiter.ErrNoLimit) {
		t.Errorf("Peek of no limit: got %v, want ErrNoLimit", err)
	}
}

// failing is a Store whose Take fails while down is set; it counts the calls that reach it.
type failing struct {
	limiter.Store
	down  atomic.Bool
	calls atomic.Int64
}

var errDown = errors.New("store down")

func (f *failing) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return false, errDown
	}
	return f.Store.Take(ctx, tag, hits, out)
}

func TestFailurePolicyAndBreaker(t *testing.T) {
	for _, policy := range []limiter.FailurePolicy{limiter.FailOpen, limiter.FailClosed, limiter.Local} {
		t.Run(policy.String(), func(t *testing.T) {
			c := &clock{t: base}
			f := &failing{Store: memstore.New(memstore.Options{Now: c.now})}
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			d := limiter.Domain{Name: "d", FailurePolicy: policy, Descriptors: []limiter.Descriptor{{Key: "k", RateLimit: rl(10, "hour")}}}
			l, err := limiter.New(limiter.Config{
				Store: f, Domains: []limiter.Domain{d}, Now: c.now, Meter: mp.Meter("test"),
				Fallback: memstore.New(memstore.Options{Now: c.now}), Replicas: 4,
				BreakerFailures: 3, BreakerCooldown: 10 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("k", "v")}}
			f.down.Store(true)
			allowed := 0
			for i := range 8 {
				c.at(time.Duration(i) * 25 * time.Millisecond) // 3 failures over 50ms open it
				var res limiter.Result
				err := l.Check(context.Background(), req, &res)
				switch policy {
				case limiter.FailClosed:
					if !errors.Is(err, limiter.ErrUnavailable) {
						t.Fatalf("request %d: got %v, want ErrUnavailable", i, err)
					}
					// The policy's answer is in the result too, for callers that deny.
					st := res.Statuses[0]
					if res.Allowed || st.Code != limiter.CodeOverLimit || st.Source != limiter.FromFailClosed ||
						st.Remaining != -1 || st.RetryAfter != limiter.UnavailableRetry || !st.Source.Unavailable() {
						t.Fatalf("request %d: got %+v, want refused by fail_closed, retry after %v", i, res, limiter.UnavailableRetry)
					}
					err = nil // counted below as not allowed
				case limiter.FailOpen:
					if err != nil || !res.Allowed || res.Statuses[0].Source != limiter.FromFailOpen || res.Statuses[0].Remaining != -1 {
						t.Fatalf("request %d: got %+v, %v, want allowed from fail_open", i, res, err)
					}
				case limiter.Local:
					if err != nil || res.Statuses[0].Source != limiter.FromFallback || res.Statuses[0].Quota != 3 {
						t.Fatalf("request %d: got %+v, %v, want a fallback decision on ceil(10/4) = 3", i, res, err)
					}
				}
				if err == nil && res.Allowed {
					allowed++
				}
			}
			if policy == limiter.Local && allowed != 3 {
				t.Errorf("local: got %d allowed, want 3", allowed)
			}
			// Three failures opened the breaker: the other five never reached the store.
			if got := f.calls.Load(); got != 3 {
				t.Errorf("store calls: got %d, want 3", got)
			}
			if got := sum(t, reader, "warden.ratelimit.store_unavailable", attribute.String("policy", policy.String())); got != 8 {
				t.Errorf("store_unavailable counter: got %d, want 8", got)
			}
			// Cooldown over, the store still down: one probe, open again.
			c.at(10*time.Second + 50*time.Millisecond)
			l.Check(context.Background(), req, &limiter.Result{})
			l.Check(context.Background(), req, &limiter.Result{})
			if got := f.calls.Load(); got != 4 {
				t.Errorf("after the cooldown with the store down: got %d calls, want 4 (one probe)", got)
			}
			// The store is back: the next probe closes the breaker.
			f.down.Store(false)
			c.at(21 * time.Second)
			for i := range 3 {
				var res limiter.Result
				if err := l.Check(context.Background(), req, &res); err != nil || !res.Allowed || res.Statuses[0].Source != limiter.FromStore {
					t.Fatalf("store back, request %d: got %+v, %v, want allowed by the store", i, res, err)
				}
			}
			if got := f.calls.Load(); got != 7 {
				t.Errorf("store back: got %d calls, want 7", got)
			}
			if got := sum(t, reader, "warden.ratelimit.decisions", attribute.String("source", "store")); got != 3 {
				t.Errorf("store decisions counter: got %d, want 3", got)
			}
		})
	}
}

// sum reads an Int64 counter's total over the data points that carry attr.
func sum(t *testing.T, r *sdkmetric.ManualReader, name string, attr attribute.KeyValue) int64 {
	t.Helper()
	return limitertest.Sum(t, r, name, attr)
}

// deadlineStore records the deadline of the context it is called with.
type deadlineStore struct {
	limiter.Store
	deadline time.Time
	ok       bool
}

func (s *deadlineStore) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	s.deadline, s.ok = ctx.Deadline()
	return s.Store.Take(ctx, tag, hits, out)
}

func TestStoreDeadline(t *testing.T) {
	c := &clock{t: base}
	ds := &deadlineStore{Store: memstore.New(memstore.Options{Now: c.now})}
	l, err := limiter.New(limiter.Config{Store: ds, Now: c.now, StoreTimeout: time.Hour, Domains: []limiter.Domain{envoyDomain()}})
	if err != nil {
		t.Fatal(err)
	}
	req := limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("remote_address", "a")}}
	var res limiter.Result
	before := time.Now()
	if err := l.Check(context.Background(), req, &res); err != nil {
		t.Fatal(err)
	}
	if !ds.ok || ds.deadline.Before(before.Add(time.Hour)) || ds.deadline.After(time.Now().Add(time.Hour)) {
		t.Errorf("no caller deadline: store got deadline %v (set %v), want now + StoreTimeout", ds.deadline, ds.ok)
	}
	ctx, cancel := context.WithDeadline(context.Background(), before.Add(time.Minute))
	defer cancel()
	if err := l.Check(ctx, req, &res); err != nil {
		t.Fatal(err)
	}
	// A minute left: the store gets it less the 20ms kept for answering by the policy.
	if want := before.Add(time.Minute - 20*time.Millisecond); !ds.deadline.Equal(want) {
		t.Errorf("caller deadline sooner than the cap: store got %v, want %v", ds.deadline, want)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
	defer cancel()
	dl, _ := ctx.Deadline()
	if err := l.Check(ctx, req, &res); err != nil {
		t.Fatal(err)
	}
	// Envoy's 20ms: a fifth of what is left when Check runs, about 4ms, is kept.
	if margin := dl.Sub(ds.deadline); margin < 3*time.Millisecond || margin > 4*time.Millisecond {
		t.Errorf("20ms caller deadline: store deadline %v before the caller's, want 4ms", margin)
	}
}

// TestDefaultStoreCeiling: with no caller deadline, a store call gets DefaultStoreTimeout, not
// the 5ms that ordinary queueing overran.
func TestDefaultStoreCeiling(t *testing.T) {
	c := &clock{t: base}
	ds := &deadlineStore{Store: memstore.New(memstore.Options{Now: c.now})}
	l, err := limiter.New(limiter.Config{Store: ds, Now: c.now, Domains: []limiter.Domain{envoyDomain()}})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	var res limiter.Result
	if err := l.Check(context.Background(), limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("remote_address", "a")}}, &res); err != nil {
		t.Fatal(err)
	}
	if got := ds.deadline.Sub(before); !ds.ok || got < limiter.DefaultStoreTimeout || got > limiter.DefaultStoreTimeout+time.Second {
		t.Errorf("default ceiling: store deadline now + %v, want %v", got, limiter.DefaultStoreTimeout)
	}
}

func TestValidation(t *testing.T) {
	ok := func(d limiter.Descriptor) limiter.Domain {
		return limiter.Domain{Name: "d", Descriptors: []limiter.Descriptor{{Key: "a", RateLimit: rl(1, "second")}, d}}
	}
	for _, tc := range []struct {
		name    string
		domains []limiter.Domain
		path    string
	}{
		{"no domain name", []limiter.Domain{{}}, "domains[0].domain"},
		{"duplicate domain", []limiter.Domain{{Name: "d"}, {Name: "d"}}, "domains[1].domain"},
		{"no key", []limiter.Domain{ok(limiter.Descriptor{})}, "domains[0].descriptors[1].key"},
		{"duplicate descriptor", []limiter.Domain{ok(limiter.Descriptor{Key: "a"})}, "domains[0].descriptors[1]"},
		{"bad unit", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: rl(1, "fortnight")})}, "domains[0].descriptors[1].rate_limit.unit"},
		{"no unit", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: rl(1, "")})}, "domains[0].descriptors[1].rate_limit.unit"},
		{"zero requests", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: rl(0, "second")})}, "domains[0].descriptors[1].rate_limit.requests_per_unit"},
		{"nested", []limiter.Domain{ok(limiter.Descriptor{Key: "b", Descriptors: []limiter.Descriptor{{Key: "c"}, {Key: "d", RateLimit: rl(-1, "hour")}}})}, "domains[0].descriptors[1].descriptors[1].rate_limit.requests_per_unit"},
		{"big sliding log", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: &limiter.RateLimit{Algorithm: limiter.SlidingLog, Unit: "hour", RequestsPerUnit: 5000}})}, "domains[0].descriptors[1].rate_limit.requests_per_unit"},
		{"sub-microsecond period", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: &limiter.RateLimit{Period: 1500 * time.Nanosecond, RequestsPerUnit: 5}})}, "domains[0].descriptors[1].rate_limit.period"},
		{"bad tier", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: &limiter.RateLimit{Unit: "hour", RequestsPerUnit: 5, Tiers: map[string]limiter.TierLimit{"x": {Unit: "eon"}}}})}, "domains[0].descriptors[1].rate_limit.tiers.x.unit"},
		{"unknown replaces", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: &limiter.RateLimit{Unit: "hour", RequestsPerUnit: 5, Replaces: []string{"nope"}}})}, "domains[0].descriptors[1].rate_limit.replaces[0].name"},
		{"unlimited with a number", []limiter.Domain{ok(limiter.Descriptor{Key: "b", RateLimit: &limiter.RateLimit{Unlimited: true, RequestsPerUnit: 5}})}, "domains[0].descriptors[1].rate_limit.requests_per_unit"},
		{"local without fallback", []limiter.Domain{{Name: "d", FailurePolicy: limiter.Local}}, "domains[0].failure_policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{}), Domains: tc.domains})
			var ce *fielderr.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a *ConfigError at %s", err, tc.path)
			}
			if ce.Path != tc.path {
				t.Errorf("got path %q (%v), want %q", ce.Path, err, tc.path)
			}
		})
	}
	if err := limiter.ValidateDomains([]limiter.Domain{envoyDomain()}); err != nil {
		t.Errorf("valid domain: %v", err)
	}
}

func TestSetDomainsKeepsOldOnError(t *testing.T) {
	c := &clock{t: base}
	l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()})
	if err := l.SetDomains([]limiter.Domain{{}}); err == nil {
		t.Fatal("SetDomains with an invalid domain: no error")
	}
	req := limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("remote_address", "a")}}
	if got := admitted(t, l, req, 5); got != 3 {
		t.Errorf("after a rejected SetDomains: got %d admitted, want 3 (old config)", got)
	}
}

func TestCheckAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	c := &clock{t: base}
	l, _ := newLimiter(t, c, []limiter.Domain{envoyDomain()}, func(cfg *limiter.Config) {
		cfg.Store = memstore.New(memstore.Options{Now: c.now})
	})
	for _, tc := range []struct {
		name string
		d    limiter.RequestDescriptor
		want float64
	}{
		{"static key", desc("path", "/login"), 0},
		{"one counter per value", desc("remote_address", "10.1.2.3"), 1}, // the key string
	} {
		req := limiter.Request{Domain: "edge", Cost: 0, Descriptors: []limiter.RequestDescriptor{tc.d}}
		var res limiter.Result
		ctx := context.Background()
		l.Check(ctx, req, &res)
		got := testing.AllocsPerRun(100, func() {
			if err := l.Check(ctx, req, &res); err != nil {
				t.Fatal(err)
			}
		})
		if got > tc.want {
			t.Errorf("%s: got %v allocs per Check, want at most %v", tc.name, got, tc.want)
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, tc := range []struct {
		name string
		d    limiter.RequestDescriptor
	}{
		{"static", desc("path", "/login")},
		{"wildcard", desc("path", "/api/users")},
		{"per_value", desc("remote_address", "10.1.2.3")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			store := memstore.New(memstore.Options{})
			d := envoyDomain()
			// Large limits so that the benchmark measures admissions.
			for i := range 3 {
				d.Descriptors[i].RateLimit = &limiter.RateLimit{Unit: "second", RequestsPerUnit: 1 << 30, Algorithm: limiter.TokenBucket}
			}
			l, err := limiter.New(limiter.Config{Store: store, Domains: []limiter.Domain{d}})
			if err != nil {
				b.Fatal(err)
			}
			req := limiter.Request{Domain: "edge", Cost: 1, Descriptors: []limiter.RequestDescriptor{tc.d}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var res limiter.Result
				ctx := context.Background()
				for pb.Next() {
					if err := l.Check(ctx, req, &res); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func TestCheckConcurrent(t *testing.T) {
	for _, alg := range []limiter.Algorithm{limiter.TokenBucket, limiter.SlidingWindow, limiter.FixedWindow, limiter.SlidingLog} {
		t.Run(alg.String(), func(t *testing.T) {
			c := &clock{t: base}
			// FailClosed: a decision the store did not make is an error here, never a
			// silent admission.
			d := limiter.Domain{Name: "d", FailurePolicy: limiter.FailClosed, Descriptors: []limiter.Descriptor{
				{Key: "k", RateLimit: &limiter.RateLimit{Unit: "hour", RequestsPerUnit: 250, Algorithm: alg}},
				{Key: "j", RateLimit: &limiter.RateLimit{Unit: "hour", RequestsPerUnit: 1000, Algorithm: alg}},
			}}
			l, _ := newLimiter(t, c, []limiter.Domain{d})
			req := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("k", "v"), desc("j", "v")}}
			var n atomic.Int64
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					var res limiter.Result
					for range 100 {
						if err := l.Check(context.Background(), req, &res); err != nil {
							t.Error(err)
							return
						}
						if res.Allowed {
							n.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if n.Load() != 250 {
				t.Errorf("8 x 100 requests on a limit of 250: got %d admitted, want 250", n.Load())
			}
			st, err := l.Peek(context.Background(), "d", "", req.Descriptors[1].Entries)
			if err != nil || st.Remaining != 750 {
				t.Errorf("the other limit: got %+v, %v, want 750 remaining (only admitted requests count)", st, err)
			}
		})
	}
}

// stalling is a Store whose Take answers by mode: the wrapped store, err, or, when hang is
// set, nothing until ctx ends.
type stalling struct {
	limiter.Store
	mu    sync.Mutex
	err   error
	hang  bool
	after time.Duration // how long an answer takes (a hang excepted)
	calls int
}

func (s *stalling) set(err error, hang bool) {
	s.mu.Lock()
	s.err, s.hang = err, hang
	s.mu.Unlock()
}

func (s *stalling) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	s.mu.Lock()
	err, hang := s.err, s.hang
	s.calls++
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return false, ctx.Err()
	}
	s.mu.Lock()
	after := s.after
	s.mu.Unlock()
	time.Sleep(after)
	if err != nil {
		return false, err
	}
	return s.Store.Take(ctx, tag, hits, out)
}

func (s *stalling) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newStalling(t *testing.T, c *clock, reader *sdkmetric.ManualReader) (*limiter.Limiter, *stalling) {
	t.Helper()
	s := &stalling{Store: memstore.New(memstore.Options{Now: c.now})}
	cfg := limiter.Config{
		Store: s, Now: c.now, BreakerFailures: 3, BreakerCooldown: 10 * time.Second,
		Domains: []limiter.Domain{{Name: "d", Descriptors: []limiter.Descriptor{{Key: "k", RateLimit: rl(1000, "hour")}}}},
	}
	if reader != nil {
		cfg.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	}
	l, err := limiter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l, s
}

var stallReq = limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("k", "v")}}

func source(t *testing.T, l *limiter.Limiter) limiter.Source {
	t.Helper()
	return check(t, l, stallReq).Statuses[0].Source
}

// TestAbandonedProbe is the regression test of a breaker stuck open for good: the half-open
// probe's caller goes away while the probe is in the store, and the probe must still report
// that it ended, so that the next call can probe and close the breaker.
func TestAbandonedProbe(t *testing.T) {
	c := &clock{t: base}
	l, s := newStalling(t, c, nil)
	s.set(errDown, false)
	for i := range 3 {
		c.at(time.Duration(i) * 25 * time.Millisecond)
		if got := source(t, l); got != limiter.FromFailOpen {
			t.Fatalf("store down: got %v, want fail_open", got)
		}
	}
	c.at(11 * time.Second) // cooldown over: the next call is the probe
	s.set(nil, true)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel) // the caller gives up while the probe hangs
	if err := l.Check(ctx, stallReq, &limiter.Result{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned probe: got %v, want context.Canceled", err)
	}
	s.set(nil, false) // the store is healthy again
	if got := source(t, l); got != limiter.FromStore {
		t.Fatalf("after an abandoned probe, with the store healthy: got %v, want store (the next call probes and closes the breaker)", got)
	}
	if got := source(t, l); got != limiter.FromStore {
		t.Fatalf("breaker closed: got %v, want store", got)
	}
}

// TestBreakerOpensOnSickStoreOnly: calls whose deadline passed before they were sent (plain
// context errors from the store, as redisstore returns for a call still queued) never open
// the breaker; requests timing out on the wire (limiter.ErrTimeout) and connection errors
// do, when they go on for 50ms and took far longer than the store usually does (a wire
// timeout after 1ms of a store that usually takes 10ms is load, not a hung store). Every state change is counted once in warden.ratelimit.breaker_transitions.
func TestBreakerOpensOnSickStoreOnly(t *testing.T) {
	c := &clock{t: base}
	reader := sdkmetric.NewManualReader()
	l, s := newStalling(t, c, reader)

	s.set(context.DeadlineExceeded, false) // a burst: every call timed out in the queue
	for i := range 20 {
		res := check(t, l, stallReq)
		if got := res.Statuses[0].Source; got != limiter.FromFailOpen {
			t.Fatalf("queued call %d: got %v, want fail_open (no answer in time)", i, got)
		}
	}
	if got := s.count(); got != 20 {
		t.Fatalf("queue timeouts: %d calls reached the store, want all 20 (the breaker stays closed)", got)
	}
	if got := sum(t, reader, "warden.ratelimit.store_unavailable", attribute.String("reason", "deadline")); got != 20 {
		t.Errorf("store_unavailable{reason=deadline}: got %d, want 20", got)
	}
	if got := sum(t, reader, "warden.ratelimit.store_unavailable", attribute.String("reason", "unavailable")); got != 0 {
		t.Errorf("store_unavailable{reason=unavailable} on a healthy store: got %d, want 0", got)
	}

	// The store answers in 10ms: its baseline.
	s.after = 10 * time.Millisecond
	s.set(nil, false)
	if got := source(t, l); got != limiter.FromStore {
		t.Fatalf("healthy store: got %v, want store", got)
	}
	wire := fmt.Errorf("redisstore: %w: %w", limiter.ErrTimeout, context.DeadlineExceeded)
	s.set(wire, false)
	s.after = time.Millisecond // not far above the store's 10ms: a short deadline on a loaded store
	for i := range 5 {
		c.at(time.Duration(i) * 25 * time.Millisecond)
		check(t, l, stallReq)
	}
	if got := s.count(); got != 26 {
		t.Fatalf("1ms wire timeouts: %d calls reached the store, want 26 (the breaker stays closed)", got)
	}
	s.after = 100 * time.Millisecond // far above: a hung store
	c.at(time.Second)
	for range 5 { // every call in flight times out at once: a hiccup, not yet a sick store
		check(t, l, stallReq)
	}
	if got := s.count(); got != 31 {
		t.Fatalf("wire timeouts at one instant: %d calls reached the store, want 31 (the breaker stays closed)", got)
	}
	c.at(time.Second + 50*time.Millisecond) // still failing 50ms later: sick
	check(t, l, stallReq)
	check(t, l, stallReq)
	if got := s.count(); got != 32 {
		t.Fatalf("wire timeouts over 50ms: %d calls reached the store, want 32 (the 32nd opens the breaker)", got)
	}
	if got := gauge(t, reader, "warden.ratelimit.breaker_state"); got != int64(limiter.BreakerOpen) {
		t.Errorf("breaker_state: got %d, want %d (open)", got, limiter.BreakerOpen)
	}
	s.set(nil, false)
	s.after = 0
	c.at(12 * time.Second)
	if got := source(t, l); got != limiter.FromStore {
		t.Fatalf("probe: got %v, want store", got)
	}
	if got := gauge(t, reader, "warden.ratelimit.breaker_state"); got != int64(limiter.BreakerClosed) {
		t.Errorf("breaker_state: got %d, want %d (closed)", got, limiter.BreakerClosed)
	}
	for _, st := range []string{"open", "half_open", "closed"} {
		if got := sum(t, reader, "warden.ratelimit.breaker_transitions", attribute.String("state", st)); got != 1 {
			t.Errorf("breaker_transitions{state=%s}: got %d, want 1", st, got)
		}
	}
}

// gauge reads an Int64 gauge's value.
func gauge(t *testing.T, r *sdkmetric.ManualReader, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == name && len(g.DataPoints) == 1 {
				return g.DataPoints[0].Value
			}
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// TestCountRefused checks envoyproxy/ratelimit's counting (src/limiter/base_limiter.go):
// every hit counts, refused or not, each descriptor on its own; a hit is over when the count
// after it exceeds the limit; a check of cost 0 is over once a charge went over.
func TestCountRefused(t *testing.T) {
	c := &clock{t: base}
	d := limiter.Domain{Name: "d", CountRefused: true, Descriptors: []limiter.Descriptor{
		{Key: "a", RateLimit: rl(2, "minute")},
		{Key: "b", RateLimit: rl(10, "minute")},
	}}
	l, _ := newLimiter(t, c, []limiter.Domain{d})
	both := limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("a", "x"), desc("b", "x")}}
	for i, want := range []bool{true, true, false, false} {
		res := check(t, l, both)
		if res.Allowed != want || (!want && res.Statuses[0].Remaining != 0) {
			t.Fatalf("request %d: got allowed=%v remaining %d, want %v", i+1, res.Allowed, res.Statuses[0].Remaining, want)
		}
	}
	// b counted all four, the two refused ones too.
	if st := check(t, l, limiter.Request{Domain: "d", Descriptors: []limiter.RequestDescriptor{desc("b", "x")}}).Statuses[0]; st.Remaining != 6 {
		t.Errorf("b after four requests: got remaining %d, want 6", st.Remaining)
	}
	// A check of cost 0 on a fresh key: allowed; charge 3 (over 2, counted); check: over.
	peek := limiter.Request{Domain: "d", Descriptors: []limiter.RequestDescriptor{desc("a", "y")}}
	if !check(t, l, peek).Allowed {
		t.Fatal("first check refused")
	}
	if check(t, l, limiter.Request{Domain: "d", Cost: 3, Descriptors: []limiter.RequestDescriptor{desc("a", "y")}}).Allowed {
		t.Error("a charge of 3 on a limit of 2: allowed")
	}
	if res := check(t, l, peek); res.Allowed || res.Statuses[0].RetryAfter <= 0 {
		t.Errorf("check after the charge went over: got %+v, want refused with a retry time", res)
	}
	// A cost no limit could take is refused, not counted as allowed.
	if check(t, l, limiter.Request{Domain: "d", Cost: 1 << 40, Descriptors: []limiter.RequestDescriptor{desc("b", "z")}}).Allowed {
		t.Error("cost 2^40: allowed")
	}
	// The next window starts afresh.
	c.at(time.Minute)
	if !check(t, l, both).Allowed {
		t.Error("next window: refused")
	}
}

// sharded is a store on two backends: tag "dead" lives on backend 1, which is down; every
// other tag on backend 2, which answers.
type sharded struct {
	limiter.Store
	deadCalls, liveCalls atomic.Int64
}

func (s *sharded) Shard(tag string) int {
	if tag == "dead" {
		return 1
	}
	return 2
}

func (s *sharded) Take(ctx context.Context, tag string, hits []limiter.Hit, out []limiter.Status) (bool, error) {
	if tag == "dead" {
		s.deadCalls.Add(1)
		return false, errDown
	}
	s.liveCalls.Add(1)
	return s.Store.Take(ctx, tag, hits, out)
}

// TestBreakerPerShard: with a store on several backends (limiter.Sharded), a dead backend
// opens only its own breaker. Calls for the live backend keep counting, and their successes
// do not keep the dead backend's breaker closed (with one breaker for the store, they reset
// its failure count, and every call to the dead backend went on failing in the store).
func TestBreakerPerShard(t *testing.T) {
	c := &clock{t: base}
	s := &sharded{Store: memstore.New(memstore.Options{Now: c.now})}
	l, err := limiter.New(limiter.Config{
		Store: s, Now: c.now, BreakerFailures: 3, BreakerCooldown: 10 * time.Second,
		Domains: []limiter.Domain{{Name: "d", HashTagKey: "tenant", Descriptors: []limiter.Descriptor{{Key: "tenant", RateLimit: rl(1000, "hour")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	req := func(tenant string) limiter.Request {
		return limiter.Request{Domain: "d", Cost: 1, Descriptors: []limiter.RequestDescriptor{desc("tenant", tenant)}}
	}
	for i := range 20 {
		c.at(time.Duration(i) * 25 * time.Millisecond)
		if got := check(t, l, req("dead")).Statuses[0].Source; got != limiter.FromFailOpen {
			t.Fatalf("call %d to the dead backend: got %v, want fail_open", i, got)
		}
		if got := check(t, l, req("live")).Statuses[0].Source; got != limiter.FromStore {
			t.Fatalf("call %d to the live backend: got %v, want store", i, got)
		}
	}
	// 3 failures over 50ms open the dead backend's breaker: the calls after them stay away
	// from it until the cooldown ends.
	if got := s.deadCalls.Load(); got != 3 {
		t.Errorf("calls that reached the dead backend: got %d, want 3 (then its breaker is open)", got)
	}
	if got := s.liveCalls.Load(); got != 20 {
		t.Errorf("calls that reached the live backend: got %d, want 20", got)
	}
}

// erring fails every Take with err.
type erring struct{ err error }

func (e erring) Take(context.Context, string, []limiter.Hit, []limiter.Status) (bool, error) {
	return false, e.err
}

// TestLostAnswerAccounted: a decision taken by the failure policy after the store's answer
// was lost (the request may have been counted there) is exported with reason "unknown", so
// that Redis's count can be reconciled with the counted admits; a store that failed to take
// the request is "unavailable".
func TestLostAnswerAccounted(t *testing.T) {
	for _, tt := range []struct {
		err    error
		reason string
	}{
		{fmt.Errorf("redis: %w: %w", limiter.ErrLost, io.ErrUnexpectedEOF), "unknown"},
		{fmt.Errorf("redis: %w: %w", limiter.ErrTimeout, context.DeadlineExceeded), "unknown"},
		{errDown, "unavailable"},
	} {
		reader := sdkmetric.NewManualReader()
		l, err := limiter.New(limiter.Config{
			Store: erring{tt.err}, Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("t"),
			Domains: []limiter.Domain{{Name: "d", Descriptors: []limiter.Descriptor{{Key: "k", RateLimit: rl(10, "hour")}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := check(t, l, stallReq).Statuses[0].Source; got != limiter.FromFailOpen {
			t.Fatalf("%v: got %v, want fail_open", tt.err, got)
		}
		if got := sum(t, reader, "warden.ratelimit.store_unavailable", attribute.String("reason", tt.reason)); got != 1 {
			t.Errorf("%v: store_unavailable{reason=%s} = %d, want 1", tt.err, tt.reason, got)
		}
	}
}
