package clients_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

func unavailable(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return nil, status.Error(codes.Unavailable, "backend down")
}

func TestRetriesBounded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []clients.ClientOption
		attempts int
	}{
		{"default", nil, clients.DefaultMaxAttempts},
		{"off", []clients.ClientOption{clients.WithRetry(1, 0, 0)}, 1},
		{"five", []clients.ClientOption{clients.WithRetry(5, time.Millisecond, 2*time.Millisecond)}, 5},
		// A wait that cannot end before the deadline is not taken.
		{"no room before the deadline", []clients.ClientOption{clients.WithRetry(100, 1000*time.Hour, 1000*time.Hour)}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeWarden{check: unavailable}
			wc := clients.NewClient(dial(t, startFake(t, f)), append([]clients.ClientOption{clients.WithTimeout(10 * time.Second)}, tc.opts...)...)
			_, err := wc.Check(context.Background(), &wardenv1.CheckRequest{})
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("got %v, want UNAVAILABLE", err)
			}
			if got := f.count("Check"); got != tc.attempts {
				t.Fatalf("got %d attempts, want %d", got, tc.attempts)
			}
		})
	}
}

func TestOtherCodesNotRetried(t *testing.T) {
	f := &fakeWarden{check: func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return nil, status.Error(codes.InvalidArgument, "http.path: required")
	}}
	wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithAuthFailurePolicy(clients.FailOpen))
	_, err := wc.Check(context.Background(), &wardenv1.CheckRequest{})
	if status.Code(err) != codes.InvalidArgument || f.count("Check") != 1 {
		t.Fatalf("got %v after %d attempts, want INVALID_ARGUMENT after 1 (and no fail-open)", err, f.count("Check"))
	}
}

// hang answers when the caller gives up.
func hang(ctx context.Context, _ *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestDeadline(t *testing.T) {
	t.Run("the caller's earlier deadline wins and never fails open", func(t *testing.T) {
		f := &fakeWarden{check: hang}
		wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithTimeout(time.Hour), clients.WithAuthFailurePolicy(clients.FailOpen))
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		d, err := wc.Check(ctx, &wardenv1.CheckRequest{})
		if status.Code(err) != codes.DeadlineExceeded || d != nil {
			t.Fatalf("got (%v, %v), want DEADLINE_EXCEEDED", d, err)
		}
		if dl := f.lastDeadline(); dl.IsZero() || dl.After(start.Add(time.Minute)) {
			t.Fatalf("Warden saw deadline %v, want the caller's (about %v)", dl, start.Add(50*time.Millisecond))
		}
	})
	t.Run("the client's timeout bounds a caller without a deadline", func(t *testing.T) {
		f := &fakeWarden{check: hang}
		wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithTimeout(50*time.Millisecond))
		start := time.Now()
		_, err := wc.Check(context.Background(), &wardenv1.CheckRequest{})
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
		}
		if dl := f.lastDeadline(); dl.IsZero() || dl.After(start.Add(time.Minute)) {
			t.Fatalf("Warden saw deadline %v, want about %v", dl, start.Add(50*time.Millisecond))
		}
	})
	t.Run("WithTimeout(0) keeps the default bound, never unbounded", func(t *testing.T) {
		f := &fakeWarden{check: hang}
		wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithTimeout(0))
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := wc.Check(context.Background(), &wardenv1.CheckRequest{})
			done <- err
		}()
		select {
		case err := <-done:
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("got %v, want DEADLINE_EXCEEDED", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Check still waiting after 10s")
		}
		if dl := f.lastDeadline(); dl.IsZero() || dl.After(start.Add(clients.DefaultTimeout+time.Second)) {
			t.Fatalf("Warden saw deadline %v, want about %v", dl, start.Add(clients.DefaultTimeout))
		}
	})
	t.Run("the client's own timeout fails open", func(t *testing.T) {
		f := &fakeWarden{check: hang}
		wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithTimeout(50*time.Millisecond), clients.WithAuthFailurePolicy(clients.FailOpen))
		d, err := wc.Check(context.Background(), &wardenv1.CheckRequest{})
		if err != nil || !d.FailedOpen || !d.GetAllowed() || status.Code(d.Cause) != codes.DeadlineExceeded {
			t.Fatalf("got (%+v, %v), want an allowed decision that failed open on DEADLINE_EXCEEDED", d, err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	addr := closedAddr(t)
	fast := []clients.ClientOption{clients.WithRetry(2, time.Millisecond, time.Millisecond)}
	ctx := context.Background()
	rlReq := &wardenv1.CheckRateLimitRequest{Domain: "api"}
	azReq := &wardenv1.AuthorizeRequest{Action: "orders:read", Resource: &wardenv1.Resource{Type: "orders"}}
	// rateLimit checks CheckRateLimit under its policy: open lets it through, closed refuses.
	rateLimit := func(t *testing.T, wc *clients.Client, open bool) {
		t.Helper()
		rl, err := wc.CheckRateLimit(ctx, rlReq)
		if open && (err != nil || !rl.FailedOpen || !rl.GetAllowed()) {
			t.Errorf("CheckRateLimit: got (%+v, %v), want allowed, failed open", rl, err)
		}
		if !open && status.Code(err) != codes.Unavailable {
			t.Errorf("CheckRateLimit: got %v, want UNAVAILABLE", err)
		}
	}

	t.Run("defaults: authentication fails closed, rate limiting open", func(t *testing.T) {
		wc := clients.NewClient(dial(t, addr), fast...)
		if _, err := wc.Check(ctx, &wardenv1.CheckRequest{}); status.Code(err) != codes.Unavailable || !clients.Unreachable(err) {
			t.Errorf("Check: got %v, want UNAVAILABLE", err)
		}
		if _, err := wc.Authorize(ctx, azReq); status.Code(err) != codes.Unavailable {
			t.Errorf("Authorize: got %v, want UNAVAILABLE", err)
		}
		rateLimit(t, wc, true)
		shop := startShop(t, wc)
		if _, err := callShop(ctx, shop, "Ping"); status.Code(err) != codes.Unavailable {
			t.Errorf("interceptor: got %v, want UNAVAILABLE", err)
		}
		rec := httptest.NewRecorder()
		clients.Middleware(wc)(okHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ping", nil))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("middleware: got %d, Retry-After %q, want 503, 1", rec.Code, rec.Header().Get("Retry-After"))
		}
	})
	t.Run("rate limiting fails closed", func(t *testing.T) {
		wc := clients.NewClient(dial(t, addr), append(fast, clients.WithRateLimitFailurePolicy(clients.FailClosed))...)
		rateLimit(t, wc, false)
	})
	for _, tc := range []struct {
		name      string
		opt       clients.ClientOption
		rateLimit bool
	}{
		{"authentication fails open", clients.WithAuthFailurePolicy(clients.FailOpen), true},
		{"both fail open (deprecated WithFailOpen)", clients.WithFailOpen(), true},
		{"authentication fails open, rate limiting closed", clients.WithRateLimitFailurePolicy(clients.FailClosed), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append(fast, tc.opt)
			if !tc.rateLimit {
				opts = append(opts, clients.WithAuthFailurePolicy(clients.FailOpen))
			}
			wc := clients.NewClient(dial(t, addr), opts...)
			d, err := wc.Check(ctx, &wardenv1.CheckRequest{})
			if err != nil || !d.FailedOpen || !d.GetAllowed() || d.GetPrincipal() != nil || d.Err() != nil {
				t.Errorf("Check: got (%+v, %v), want allowed, failed open, no principal", d, err)
			}
			az, err := wc.Authorize(ctx, azReq)
			if err != nil || !az.FailedOpen || !az.GetAllowed() {
				t.Errorf("Authorize: got (%+v, %v), want allowed, failed open", az, err)
			}
			rateLimit(t, wc, tc.rateLimit)
			if _, err := wc.Authenticate(ctx, &wardenv1.Credentials{ApiKey: "sk-test-x"}); status.Code(err) != codes.Unavailable {
				t.Errorf("Authenticate: got %v, want UNAVAILABLE (it never fails open)", err)
			}
			shop := startShop(t, wc)
			if sub, err := callShop(ctx, shop, "Ping"); err != nil || sub != "" {
				t.Errorf("interceptor: got (%q, %v), want the handler to run without a principal", sub, err)
			}
			rec := httptest.NewRecorder()
			clients.Middleware(wc)(markerHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/v1/ping", nil))
			if rec.Code != http.StatusOK || rec.Body.String() != "failed open" {
				t.Errorf("middleware: got %d %q, want 200 \"failed open\"", rec.Code, rec.Body.String())
			}
		})
	}
}

// markerHandler answers "failed open" for a request marked FailedOpenFrom (and then checks
// it has no principal), its principal's subject otherwise.
func markerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := clients.PrincipalFrom(r.Context())
		switch {
		case clients.FailedOpenFrom(r.Context()) && ok:
			_, _ = w.Write([]byte("failed open WITH a principal"))
		case clients.FailedOpenFrom(r.Context()):
			_, _ = w.Write([]byte("failed open"))
		default:
			_, _ = w.Write([]byte(p.GetSubject()))
		}
	})
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := clients.PrincipalFrom(r.Context())
		_, _ = w.Write([]byte(p.GetSubject()))
	})
}

func TestCheckError(t *testing.T) {
	over := &wardenv1.RateLimitStatus{Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT, Name: "per_user", Limit: 10,
		Window: durationpb.New(time.Minute), RetryAfter: durationpb.New(3 * time.Second)}
	longer := &wardenv1.RateLimitStatus{Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT, Name: "daily", Limit: 1000,
		Window: durationpb.New(24 * time.Hour), RetryAfter: durationpb.New(7 * time.Second)}
	shadow := &wardenv1.RateLimitStatus{Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT, Name: "shadow", Shadow: true,
		RetryAfter: durationpb.New(time.Hour)}
	ok := &wardenv1.RateLimitStatus{Code: wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK, Name: "burst"}
	for _, tc := range []struct {
		name       string
		resp       *wardenv1.CheckResponse
		code       codes.Code
		retry      time.Duration // 0: no RetryInfo
		violations []string
	}{
		{"allowed", &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200}, codes.OK, 0, nil},
		{"401", &wardenv1.CheckResponse{HttpStatus: 401}, codes.Unauthenticated, 0, nil},
		{"authenticate stage without status", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE}, codes.Unauthenticated, 0, nil},
		{"403", &wardenv1.CheckResponse{HttpStatus: 403}, codes.PermissionDenied, 0, nil},
		{"404 not owner", &wardenv1.CheckResponse{HttpStatus: 404, Reason: wardenv1.DenyReason_DENY_REASON_NOT_OWNER}, codes.NotFound, 0, nil},
		{"400", &wardenv1.CheckResponse{HttpStatus: 400}, codes.InvalidArgument, 0, nil},
		{"unknown status", &wardenv1.CheckResponse{HttpStatus: 418}, codes.PermissionDenied, 0, nil},
		{"429: longest retry of the limits that refused", &wardenv1.CheckResponse{HttpStatus: 429, RateLimits: []*wardenv1.RateLimitStatus{ok, over, longer, shadow}},
			codes.ResourceExhausted, 7 * time.Second, []string{"per_user", "daily"}},
		{"429: Retry-After header when no limit says", &wardenv1.CheckResponse{HttpStatus: 429, ResponseHeaders: []*wardenv1.Header{{Name: "Retry-After", Value: "12"}}},
			codes.ResourceExhausted, 12 * time.Second, nil},
		{"rate-limit stage without status", &wardenv1.CheckResponse{Stage: wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT, RateLimits: []*wardenv1.RateLimitStatus{over}},
			codes.ResourceExhausted, 3 * time.Second, []string{"per_user"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := clients.CheckError(tc.resp)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
			d, hasRetry := clients.RetryDelay(err)
			if d != tc.retry || hasRetry != (tc.retry > 0) {
				t.Errorf("RetryDelay: got (%v, %v), want %v", d, hasRetry, tc.retry)
			}
			var got []string
			for _, det := range status.Convert(err).Details() {
				if qf, ok := det.(*errdetails.QuotaFailure); ok {
					for _, v := range qf.GetViolations() {
						got = append(got, v.GetSubject())
					}
				}
			}
			if len(got) != len(tc.violations) || (len(got) > 0 && (got[0] != tc.violations[0] || got[len(got)-1] != tc.violations[len(got)-1])) {
				t.Errorf("QuotaFailure subjects: got %v, want %v", got, tc.violations)
			}
		})
	}
	if err := clients.RateLimitError(&wardenv1.CheckRateLimitResponse{RetryAfter: durationpb.New(2 * time.Second)}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("RateLimitError: got %v, want RESOURCE_EXHAUSTED", err)
	} else if d, _ := clients.RetryDelay(err); d != 2*time.Second {
		t.Errorf("RateLimitError RetryDelay: got %v, want 2s", d)
	}
	if err := clients.AuthenticateError(&wardenv1.AuthenticateResponse{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("AuthenticateError: got %v, want UNAUTHENTICATED", err)
	}
	if err := clients.AuthorizeError(&wardenv1.AuthorizeResponse{HttpStatus: 404}); status.Code(err) != codes.NotFound {
		t.Errorf("AuthorizeError: got %v, want NOT_FOUND", err)
	}
	if _, ok := clients.RetryDelay(errors.New("plain")); ok {
		t.Error("RetryDelay of a plain error: got true, want false")
	}
}

// TestRateLimitedMessage says when to retry in whole seconds, rounded up, as Retry-After does.
func TestRateLimitedMessage(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{
		{1500 * time.Millisecond, "rate limited; retry after 2s"},
		{3 * time.Second, "rate limited; retry after 3s"},
		{time.Millisecond, "rate limited; retry after 1s"},
		{0, "rate limited"},
	} {
		err := clients.RateLimitError(&wardenv1.CheckRateLimitResponse{RetryAfter: durationpb.New(tc.after)})
		if got := status.Convert(err).Message(); got != tc.want {
			t.Errorf("retry after %v: got %q, want %q", tc.after, got, tc.want)
		}
		if d, _ := clients.RetryDelay(err); d != tc.after {
			t.Errorf("retry after %v: RetryInfo says %v, want the exact delay", tc.after, d)
		}
	}
}
