package clients_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// clock is a settable clock for the cache.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// cacheFake authenticates "Bearer good-<name>" as <name> (credential id "k-<name>", tier
// "free", expiring at expires if set), allows orders:read, and lets rateBudget requests
// through CheckRateLimit.
func cacheFake(expires time.Time, rateBudget int) *fakeWarden {
	var mu sync.Mutex
	f := &fakeWarden{}
	f.authenticate = func(_ context.Context, req *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error) {
		var name string
		if _, err := fmt.Sscanf(req.GetCredentials().GetHeaders()["authorization"], "Bearer good-%s", &name); err != nil {
			return &wardenv1.AuthenticateResponse{Reason: wardenv1.DenyReason_DENY_REASON_UNKNOWN_CREDENTIALS, HttpStatus: 401,
				ResponseHeaders: []*wardenv1.Header{{Name: "WWW-Authenticate", Value: `Bearer error="invalid_token"`}}}, nil
		}
		p := &wardenv1.Principal{Subject: name, CredentialId: "k-" + name, Tier: "free"}
		if !expires.IsZero() {
			p.ExpiresAt = timestamppb.New(expires)
		}
		return &wardenv1.AuthenticateResponse{Authenticated: true, Principal: p}, nil
	}
	f.authorize = func(_ context.Context, req *wardenv1.AuthorizeRequest) (*wardenv1.AuthorizeResponse, error) {
		if req.GetPrincipal().GetSubject() == "" {
			return nil, status.Error(codes.InvalidArgument, "principal.subject: required")
		}
		if req.GetAction() != "orders:read" {
			return &wardenv1.AuthorizeResponse{Reason: wardenv1.DenyReason_DENY_REASON_MISSING_ROLE, HttpStatus: 403}, nil
		}
		return &wardenv1.AuthorizeResponse{Allowed: true}, nil
	}
	f.checkRateLimit = func(_ context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error) {
		if req.GetTier() != "free" || req.GetDomain() != "api" {
			return nil, status.Error(codes.InvalidArgument, "want tier free, domain api")
		}
		mu.Lock()
		defer mu.Unlock()
		h := []*wardenv1.Header{{Name: "RateLimit", Value: fmt.Sprintf(`"per_user";r=%d;t=60`, max(rateBudget-1, 0))}}
		if rateBudget == 0 {
			return &wardenv1.CheckRateLimitResponse{Headers: h}, nil
		}
		rateBudget--
		return &wardenv1.CheckRateLimitResponse{Allowed: true, Headers: h}, nil
	}
	return f
}

// shopActions maps GetOrder to orders:read and Ping to orders:write; the rest go to Check.
func shopActions(name string) (string, *wardenv1.Resource, bool) {
	switch name {
	case "/test.v1.Shop/GetOrder", "/test.v1.Shop/Echo":
		return "orders:read", &wardenv1.Resource{Type: "orders"}, true
	case "/test.v1.Shop/Ping":
		return "orders:write", &wardenv1.Resource{Type: "orders"}, true
	}
	return "", nil, false
}

func perUser(context.Context, string) (string, []*wardenv1.RateLimitDescriptor) {
	return "api", []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "method", Value: "GetOrder"}}}}
}

func withToken(tok string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

func TestAuthnCache(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := cacheFake(time.Time{}, 1000)
	cache := clients.NewAuthnCache(clients.CacheConfig{TTL: 5 * time.Second, MaxEntries: 3, Now: clk.now})
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithActions(shopActions), clients.WithRateLimits(perUser), clients.WithAuthnCache(cache))

	calls := func() [3]int { return [3]int{f.count("Authenticate"), f.count("Authorize"), f.count("CheckRateLimit")} }
	expect := func(step string, want [3]int) {
		t.Helper()
		if got := calls(); got != want {
			t.Fatalf("%s: got %v calls to [Authenticate Authorize CheckRateLimit], want %v", step, got, want)
		}
	}
	get := func(tok string, want codes.Code, wantSub string) {
		t.Helper()
		sub, err := callShop(withToken(tok), shop, "GetOrder")
		if status.Code(err) != want || sub != wantSub {
			t.Fatalf("GetOrder with %q: got (%q, %v), want (%q, %v)", tok, sub, err, wantSub, want)
		}
	}

	for range 3 {
		get("good-alice", codes.OK, "alice")
	}
	expect("three requests, one credential", [3]int{1, 3, 3})

	get("bad", codes.Unauthenticated, "")
	get("bad", codes.Unauthenticated, "")
	expect("failures are not cached", [3]int{3, 3, 3})

	if _, err := callShop(withToken("good-alice"), shop, "Ping"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Ping (orders:write): got %v, want PERMISSION_DENIED", err)
	}
	expect("authorization is asked on a hit, and a denial consumes no quota", [3]int{3, 4, 3})

	if n := cache.Invalidate("k-alice"); n != 1 {
		t.Fatalf("Invalidate: removed %d, want 1", n)
	}
	get("good-alice", codes.OK, "alice")
	expect("after Invalidate", [3]int{4, 5, 4})

	clk.advance(4 * time.Second)
	get("good-alice", codes.OK, "alice")
	expect("within the TTL", [3]int{4, 6, 5})
	clk.advance(time.Second)
	get("good-alice", codes.OK, "alice")
	expect("at the TTL", [3]int{5, 7, 6})

	for _, u := range []string{"bob", "carol", "dave", "erin"} {
		get("good-"+u, codes.OK, u)
	}
	if n := cache.Len(); n != 3 {
		t.Fatalf("Len after 5 credentials with MaxEntries 3: got %d, want 3", n)
	}
	get("good-erin", codes.OK, "erin")
	expect("the most recent credential stays", [3]int{9, 12, 11})
	get("good-alice", codes.OK, "alice")
	expect("the least recently used was evicted", [3]int{10, 13, 12})

	// Decisions made without Check carry no identity headers: the client's are removed.
	ctx := metadata.AppendToOutgoingContext(withToken("good-alice"), "x-warden-subject", "forged", "x-other", "o")
	if got, err := callShop(ctx, shop, "Echo"); err != nil || got != "x-other=o" {
		t.Fatalf("Echo: got (%q, %v), want the client's x-warden-* metadata removed", got, err)
	}

	if n := cache.InvalidateSubject("erin"); n != 1 {
		t.Fatalf("InvalidateSubject: removed %d, want 1", n)
	}
	cache.Flush()
	if n := cache.Len(); n != 0 {
		t.Fatalf("Len after Flush: got %d, want 0", n)
	}
}

func TestAuthnCacheHonoursExpiry(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := cacheFake(clk.now().Add(2*time.Second), 1000)
	cache := clients.NewAuthnCache(clients.CacheConfig{TTL: time.Minute, Now: clk.now})
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithActions(shopActions), clients.WithAuthnCache(cache))
	for _, step := range []time.Duration{0, time.Second, time.Second} {
		clk.advance(step)
		if _, err := callShop(withToken("good-alice"), shop, "GetOrder"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count("Authenticate"); got != 2 {
		t.Fatalf("got %d Authenticate calls over 2s for a credential expiring after 2s, want 2", got)
	}
	if got := f.count("CheckRateLimit"); got != 0 {
		t.Fatalf("got %d CheckRateLimit calls without WithRateLimits, want 0", got)
	}
}

func TestAuthnCacheRateLimitExact(t *testing.T) {
	f := cacheFake(time.Time{}, 2)
	cache := clients.NewAuthnCache(clients.CacheConfig{})
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithActions(shopActions), clients.WithRateLimits(perUser), clients.WithAuthnCache(cache))
	for i := range 2 {
		var hdr metadata.MD
		if _, err := callShop(withToken("good-alice"), shop, "GetOrder", grpc.Header(&hdr)); err != nil || len(hdr.Get("ratelimit")) != 1 {
			t.Fatalf("call %d: got %v with header metadata %v, want allowed with ratelimit", i+1, err, hdr)
		}
	}
	if _, err := callShop(withToken("good-alice"), shop, "GetOrder"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third call: got %v, want RESOURCE_EXHAUSTED", err)
	}
	if got := f.count("Authenticate"); got != 1 {
		t.Fatalf("Authenticate calls: got %d, want 1", got)
	}
}

func TestAuthnCacheRouteRequestsUseCheck(t *testing.T) {
	f := cacheFake(time.Time{}, 1000)
	f.check = func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200, Principal: &wardenv1.Principal{Subject: "route"}}, nil
	}
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithActions(shopActions), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{})))
	for range 2 {
		if sub, err := callShop(withToken("good-alice"), shop, "Limited"); err != nil || sub != "route" {
			t.Fatalf("Limited: got (%q, %v), want (\"route\", nil)", sub, err)
		}
	}
	if a, c := f.count("Authenticate"), f.count("Check"); a != 0 || c != 2 {
		t.Fatalf("got %d Authenticate and %d Check calls, want 0 and 2", a, c)
	}
}

// The TTL counts from when Authenticate was sent, not from when its answer arrived: Warden's
// answer reflects its state at some instant during the call, so a slow answer must not
// stretch how long a revoked credential keeps working.
func TestAuthnCacheTTLCountsFromTheCall(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := cacheFake(time.Time{}, 1000)
	authenticate := f.authenticate
	f.authenticate = func(ctx context.Context, req *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error) {
		clk.advance(2 * time.Second) // the answer takes 2s to come back
		return authenticate(ctx, req)
	}
	cache := clients.NewAuthnCache(clients.CacheConfig{TTL: 5 * time.Second, Now: clk.now})
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithActions(shopActions), clients.WithAuthnCache(cache))
	// Sent at 0s, answered at 2s; then 2.999…s later (4.999…s after the send): a hit.
	// Then at 5s after the send: a miss, although the answer is only 3s old.
	for i, step := range []time.Duration{0, 3*time.Second - 1, 1} {
		clk.advance(step)
		if _, err := callShop(withToken("good-alice"), shop, "GetOrder"); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	if got := f.count("Authenticate"); got != 2 {
		t.Fatalf("Authenticate calls: got %d, want 2 (the entry expires 5s after the first call was sent)", got)
	}
}
