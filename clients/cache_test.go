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
	// Check is the three above in one call, as Warden's is; route-table requests need only
	// authentication.
	f.check = func(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		ar, err := f.authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: req.GetCredentials()})
		if err != nil {
			return nil, err
		}
		if !ar.GetAuthenticated() {
			return &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE, Reason: ar.GetReason(),
				HttpStatus: 401, ResponseHeaders: ar.GetResponseHeaders()}, nil
		}
		p := ar.GetPrincipal()
		resp := &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200, Principal: p,
			UpstreamHeaders: []*wardenv1.Header{{Name: "x-warden-subject", Value: p.GetSubject()}}}
		if req.GetHttp() != nil {
			return resp, nil
		}
		az, err := f.authorize(ctx, &wardenv1.AuthorizeRequest{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: p}, Action: req.GetAction(), Resource: req.GetResource()})
		if err != nil {
			return nil, err
		}
		if !az.GetAllowed() {
			return &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHORIZE, Reason: az.GetReason(), HttpStatus: az.GetHttpStatus()}, nil
		}
		if req.GetRateLimitDomain() == "" {
			return resp, nil
		}
		rl, err := f.checkRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: req.GetRateLimitDomain(), Descriptors: req.GetRateLimitDescriptors(), Tier: p.GetTier()})
		if err != nil {
			return nil, err
		}
		if !rl.GetAllowed() {
			return &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT, HttpStatus: 429, ResponseHeaders: rl.GetHeaders()}, nil
		}
		resp.ResponseHeaders = rl.GetHeaders()
		resp.RateLimits = []*wardenv1.RateLimitStatus{{Name: "per_user", Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK}}
		return resp, nil
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

	calls := func() [4]int {
		return [4]int{f.count("Check"), f.count("Authenticate"), f.count("Authorize"), f.count("CheckRateLimit")}
	}
	expect := func(step string, want [4]int) {
		t.Helper()
		if got := calls(); got != want {
			t.Fatalf("%s: got %v calls to [Check Authenticate Authorize CheckRateLimit], want %v", step, got, want)
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
	expect("three requests, one credential: one Check, then one CheckRateLimit each", [4]int{1, 0, 0, 2})

	get("bad", codes.Unauthenticated, "")
	get("bad", codes.Unauthenticated, "")
	expect("failures are not cached", [4]int{3, 0, 0, 2})

	if _, err := callShop(withToken("good-alice"), shop, "Ping"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("Ping (orders:write): got %v, want PERMISSION_DENIED", err)
	}
	expect("another action is another entry, and a denial is not cached", [4]int{4, 0, 0, 2})

	if n := cache.Invalidate("k-alice"); n != 1 {
		t.Fatalf("Invalidate: removed %d, want 1", n)
	}
	get("good-alice", codes.OK, "alice")
	expect("after Invalidate", [4]int{5, 0, 0, 2})

	clk.advance(4 * time.Second)
	get("good-alice", codes.OK, "alice")
	expect("within the TTL", [4]int{5, 0, 0, 3})
	clk.advance(time.Second)
	get("good-alice", codes.OK, "alice")
	expect("at the TTL", [4]int{6, 0, 0, 3})

	for _, u := range []string{"bob", "carol", "dave", "erin"} {
		get("good-"+u, codes.OK, u)
	}
	if n := cache.Len(); n != 3 {
		t.Fatalf("Len after 5 credentials with MaxEntries 3: got %d, want 3", n)
	}
	get("good-erin", codes.OK, "erin")
	expect("the most recent credential stays", [4]int{10, 0, 0, 4})
	get("good-alice", codes.OK, "alice")
	expect("the least recently used was evicted", [4]int{11, 0, 0, 4})

	// A cache hit carries Warden's identity headers from the Check that filled it, after the
	// client's own are removed (Echo is the same action and resource as GetOrder: a hit).
	ctx := metadata.AppendToOutgoingContext(withToken("good-alice"), "x-warden-subject", "forged", "x-other", "o")
	if got, err := callShop(ctx, shop, "Echo"); err != nil || got != "x-other=o;x-warden-subject=alice" {
		t.Fatalf("Echo: got (%q, %v), want the client's x-warden-* metadata replaced by Warden's", got, err)
	}
	expect("Echo was a hit", [4]int{11, 0, 0, 5})

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
	if got := f.count("Check"); got != 2 {
		t.Fatalf("got %d Check calls over 2s for a credential expiring after 2s, want 2", got)
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
	if c, rl := f.count("Check"), f.count("CheckRateLimit"); c != 1 || rl != 2 {
		t.Fatalf("got %d Check and %d CheckRateLimit calls, want 1 and 2 (one round trip per request)", c, rl)
	}
}

// TestAuthnCacheRouteTable caches route-table decisions too, keyed by the credentials, the
// method, path, host and every header, unless the route applied rate limits (only Check
// knows a route's descriptors).
func TestAuthnCacheRouteTable(t *testing.T) {
	f := cacheFake(time.Time{}, 1000)
	limited := &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200, Principal: &wardenv1.Principal{Subject: "route"},
		RateLimits: []*wardenv1.RateLimitStatus{{Name: "limited_route", Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK}}}
	check := f.check
	f.check = func(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		if req.GetGrpcMethod() == "/test.v1.Shop/Limited" {
			return limited, nil
		}
		return check(ctx, req)
	}
	wc := clients.NewClient(dial(t, startFake(t, f)))
	shop := startShop(t, wc, clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{})))
	call := func(ctx context.Context, method, want string) {
		t.Helper()
		if sub, err := callShop(ctx, shop, method); err != nil || sub != want {
			t.Fatalf("%s: got (%q, %v), want (%q, nil)", method, sub, err, want)
		}
	}
	for range 3 {
		call(withToken("good-alice"), "GetOrder", "alice")
	}
	if c := f.count("Check"); c != 1 {
		t.Fatalf("a route without rate limits: got %d Check calls for 3 requests, want 1", c)
	}
	call(metadata.AppendToOutgoingContext(withToken("good-alice"), "x-tenant", "t2"), "GetOrder", "alice")
	call(withToken("good-bob"), "GetOrder", "bob")
	if c := f.count("Check"); c != 3 {
		t.Fatalf("another header, another credential: got %d Check calls, want 3", c)
	}
	for range 2 {
		call(withToken("good-alice"), "Limited", "route")
	}
	if c, rl := f.count("Check"), f.count("CheckRateLimit"); c != 5 || rl != 0 {
		t.Fatalf("a route with rate limits: got %d Check and %d CheckRateLimit calls, want 5 and 0 (one Check each)", c, rl)
	}
}

// The TTL counts from when Check was sent, not from when its answer arrived: Warden's
// answer reflects its state at some instant during the call, so a slow answer must not
// stretch how long a revoked credential keeps working.
func TestAuthnCacheTTLCountsFromTheCall(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := cacheFake(time.Time{}, 1000)
	check := f.check
	f.check = func(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		clk.advance(2 * time.Second) // the answer takes 2s to come back
		return check(ctx, req)
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
	if got := f.count("Check"); got != 2 {
		t.Fatalf("Check calls: got %d, want 2 (the entry expires 5s after the first call was sent)", got)
	}
}
