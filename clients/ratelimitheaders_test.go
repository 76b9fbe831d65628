package clients_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// bothFlavours answers Check as a Warden with rate_limit.headers "both" does: both sets of
// rate-limit headers, and Retry-After when denied.
func bothFlavours(allowed bool) func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		r := &wardenv1.CheckResponse{Allowed: allowed, HttpStatus: 200, Principal: &wardenv1.Principal{Subject: "alice"},
			ResponseHeaders: []*wardenv1.Header{
				{Name: "RateLimit-Policy", Value: `"per-key";q=10;w=60`}, {Name: "RateLimit", Value: `"per-key";r=0;t=60`},
				{Name: "X-RateLimit-Limit", Value: "10"}, {Name: "X-RateLimit-Remaining", Value: "0"}, {Name: "X-RateLimit-Reset", Value: "60"},
			}}
		if !allowed {
			r.HttpStatus, r.Reason = 429, wardenv1.DenyReason_DENY_REASON_RATE_LIMITED
			r.ResponseHeaders = append(r.ResponseHeaders, &wardenv1.Header{Name: "Retry-After", Value: "60"})
		}
		return r, nil
	}
}

// TestRateLimitHeaderFlavours: WithRateLimitHeaders passes on the flavour asked for, on
// allowed requests and on 429 alike, through the middleware and the interceptor; Retry-After
// always goes.
func TestRateLimitHeaderFlavours(t *testing.T) {
	ietf := []string{"ratelimit", "ratelimit-policy"}
	x := []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
	all := append(append([]string(nil), ietf...), x...)
	for _, tc := range []struct {
		name   string
		opts   []clients.HandlerOption
		expect []string // the rate-limit headers the end client gets, lower case, sorted
	}{
		{"as sent (default)", nil, sorted(all)},
		{"ietf", []clients.HandlerOption{clients.WithRateLimitHeaders(clients.RateLimitHeadersIETF)}, sorted(ietf)},
		{"x-ratelimit", []clients.HandlerOption{clients.WithRateLimitHeaders(clients.RateLimitHeadersXRateLimit)}, sorted(x)},
		{"both", []clients.HandlerOption{clients.WithRateLimitHeaders(clients.RateLimitHeadersBoth)}, sorted(all)},
	} {
		for _, allowed := range []bool{true, false} {
			wc := clients.NewClient(dial(t, startFake(t, &fakeWarden{check: bothFlavours(allowed)})))
			want := tc.expect
			if !allowed {
				want = sorted(append(append([]string(nil), want...), "retry-after"))
			}
			t.Run(tc.name+map[bool]string{true: " allowed", false: " 429"}[allowed], func(t *testing.T) {
				w := httptest.NewRecorder()
				clients.Middleware(wc, tc.opts...)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})).
					ServeHTTP(w, httptest.NewRequest("GET", "/v1/orders", nil))
				if wantCode := map[bool]int{true: 200, false: 429}[allowed]; w.Code != wantCode {
					t.Fatalf("middleware: got %d, want %d", w.Code, wantCode)
				}
				if diff := cmp.Diff(want, rateLimitNames(w.Header())); diff != "" {
					t.Errorf("middleware (allowed %v): headers (-want +got):\n%s", allowed, diff)
				}

				var md metadata.MD
				_, err := callShop(context.Background(), startShop(t, wc, tc.opts...), "Echo", grpc.Header(&md))
				if (err == nil) != allowed {
					t.Fatalf("interceptor: got %v, want allowed %v", err, allowed)
				}
				if diff := cmp.Diff(want, rateLimitNames(md)); diff != "" {
					t.Errorf("interceptor (allowed %v): header metadata (-want +got):\n%s", allowed, diff)
				}
			})
		}
	}
	if f, ok := clients.ParseRateLimitHeaders("x-ratelimit"); !ok || f != clients.RateLimitHeadersXRateLimit {
		t.Errorf("ParseRateLimitHeaders(x-ratelimit): got %v, %v", f, ok)
	}
	if _, ok := clients.ParseRateLimitHeaders("X-RateLimit"); ok {
		t.Error("ParseRateLimitHeaders(X-RateLimit): got ok, want a refusal as Warden's config does")
	}
}

// rateLimitNames are the rate-limit and Retry-After names in h, lower case, sorted.
func rateLimitNames[M ~map[string][]string](h M) []string {
	var names []string
	for k := range h {
		switch k := http.CanonicalHeaderKey(k); k {
		case "Ratelimit", "Ratelimit-Policy", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset", "Retry-After":
			names = append(names, strings.ToLower(k))
		}
	}
	return sorted(names)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
