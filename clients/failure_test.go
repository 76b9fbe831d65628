package clients_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// TestCachedFailurePolicies sends requests through the middleware with a cache while Warden
// cannot answer one of its calls: a miss's Check follows the authentication policy and never
// passes a principal on when it fails open; a hit's CheckRateLimit follows the rate-limit
// policy (open by default) and keeps the principal Warden cleared.
func TestCachedFailurePolicies(t *testing.T) {
	fast := clients.WithRetry(1, 0, 0)
	for _, tc := range []struct {
		name       string
		down       string // "check" (a miss, another credential) or "ratelimit" (a hit)
		opts       []clients.ClientOption
		code       int
		body       string
		retryAfter string
	}{
		{"check down, default", "check", nil, 503, "", "1"},
		{"check down, authentication fails open", "check", []clients.ClientOption{clients.WithAuthFailurePolicy(clients.FailOpen)}, 200, "failed open", ""},
		{"rate limit down, default", "ratelimit", nil, 200, "alice", ""},
		{"rate limit down, rate limiting fails closed", "ratelimit", []clients.ClientOption{clients.WithRateLimitFailurePolicy(clients.FailClosed)}, 503, "", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := cacheFake(time.Time{}, 100)
			var down atomic.Bool
			check, checkRateLimit := f.check, f.checkRateLimit
			f.check = func(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
				if down.Load() && tc.down == "check" {
					return nil, status.Error(codes.Unavailable, "backend down")
				}
				return check(ctx, req)
			}
			f.checkRateLimit = func(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error) {
				if down.Load() && tc.down == "ratelimit" {
					return nil, status.Error(codes.Unavailable, "backend down")
				}
				return checkRateLimit(ctx, req)
			}
			wc := clients.NewClient(dial(t, startFake(t, f)), append([]clients.ClientOption{fast, clients.WithLogger(slog.New(slog.DiscardHandler))}, tc.opts...)...)
			h := clients.Middleware(wc, clients.WithActions(anyAction), clients.WithRateLimits(perUser),
				clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{})))(markerHandler())
			serve := func(who string) *httptest.ResponseRecorder {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", "/v1/orders", nil)
				req.Header.Set("Authorization", "Bearer good-"+who)
				h.ServeHTTP(rec, req)
				return rec
			}
			if rec := serve("alice"); rec.Code != 200 || rec.Body.String() != "alice" {
				t.Fatalf("Warden up: got %d %q, want 200 \"alice\"", rec.Code, rec.Body.String())
			}
			down.Store(true)
			who := "alice"
			if tc.down == "check" {
				who = "bob"
			}
			rec := serve(who)
			if rec.Code != tc.code || (tc.body != "" && rec.Body.String() != tc.body) || rec.Header().Get("Retry-After") != tc.retryAfter {
				t.Fatalf("got %d %q Retry-After %q, want %d %q Retry-After %q", rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"), tc.code, tc.body, tc.retryAfter)
			}
		})
	}
}

// TestOutageLogRateLimited fails 50 calls during an outage: one warning line, then one more
// per interval, each carrying the number of failures it stands for.
func TestOutageLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	const interval = 300 * time.Millisecond
	wc := clients.NewClient(dial(t, closedAddr(t)), clients.WithRetry(1, 0, 0), clients.WithLogger(log), clients.WithOutageLog(interval))
	h := clients.Middleware(wc)(okHandler())
	serve := func(n int) {
		for range n {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/orders", nil))
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("got %d, want 503", rec.Code)
			}
		}
	}
	start := time.Now()
	serve(50)
	if time.Since(start) >= interval {
		t.Skip("machine too slow for the interval: 50 calls took", time.Since(start))
	}
	if got := strings.Count(buf.String(), "\n"); got != 1 || !strings.Contains(buf.String(), "failures=1 ") {
		t.Fatalf("after 50 failures: got %d lines:\n%s\nwant 1 line with failures=1", got, buf.String())
	}
	time.Sleep(interval)
	serve(1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], "failures=50 ") {
		t.Fatalf("after the interval: got\n%s\nwant a second line with failures=50 (49 suppressed + this one)", buf.String())
	}
}
