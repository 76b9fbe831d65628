package clients_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// The tests in this file run against a real Warden (the binary, in-memory store) started
// with testConfig.

func TestEndToEnd(t *testing.T) {
	addr := startWarden(t, testConfig)
	wc := clients.NewClient(dial(t, addr), clients.WithTimeout(5*time.Second))
	ctx := context.Background()

	t.Run("interceptor allows a public route", func(t *testing.T) {
		shop := startShop(t, wc)
		sub, err := callShop(ctx, shop, "Ping")
		if err != nil || sub != "" {
			t.Fatalf("Ping: got (%q, %v), want (\"\", nil)", sub, err)
		}
		// The stream interceptor too.
		st, err := shop.NewStream(ctx, &shopDesc.Streams[0], "/test.v1.Shop/Watch")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.SendMsg(&emptypb.Empty{}); err != nil {
			t.Fatal(err)
		}
		out := new(wrapperspb.StringValue)
		if err := st.RecvMsg(out); err != nil || out.GetValue() != "" {
			t.Fatalf("Watch: got (%q, %v), want (\"\", nil)", out.GetValue(), err)
		}
	})

	t.Run("interceptor rate limit with RetryInfo and QuotaFailure", func(t *testing.T) {
		shop := startShop(t, wc)
		for i := range 2 {
			var hdr metadata.MD
			if _, err := callShop(ctx, shop, "Limited", grpc.Header(&hdr)); err != nil {
				t.Fatalf("call %d: got %v, want allowed", i+1, err)
			}
			if len(hdr.Get("ratelimit")) == 0 || len(hdr.Get("ratelimit-policy")) == 0 {
				t.Fatalf("call %d: header metadata %v, want ratelimit and ratelimit-policy", i+1, hdr)
			}
		}
		var hdr metadata.MD
		_, err := callShop(ctx, shop, "Limited", grpc.Header(&hdr))
		if got := status.Code(err); got != codes.ResourceExhausted {
			t.Fatalf("third call: got %v, want RESOURCE_EXHAUSTED", err)
		}
		d, ok := clients.RetryDelay(err)
		if !ok || d <= 0 || d > time.Minute {
			t.Fatalf("RetryDelay: got (%v, %v), want (0 < d <= 1m, true)", d, ok)
		}
		var qf *errdetails.QuotaFailure
		for _, det := range status.Convert(err).Details() {
			if q, ok := det.(*errdetails.QuotaFailure); ok {
				qf = q
			}
		}
		if qf == nil || len(qf.GetViolations()) != 1 || qf.GetViolations()[0].GetSubject() != "limited_route" {
			t.Fatalf("QuotaFailure: got %v, want one violation for limited_route", qf)
		}
		if len(hdr.Get("retry-after")) == 0 {
			t.Fatalf("header metadata %v, want retry-after", hdr)
		}
	})

	t.Run("CheckRateLimit", func(t *testing.T) {
		req := &wardenv1.CheckRateLimitRequest{Domain: "api", Descriptors: []*wardenv1.RateLimitDescriptor{
			{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "client", Value: "c1"}}},
		}}
		d, err := wc.CheckRateLimit(ctx, req)
		if err != nil || !d.GetAllowed() || d.FailedOpen || d.Err() != nil {
			t.Fatalf("first: got (%v, %v), want allowed", d, err)
		}
		d, err = wc.CheckRateLimit(ctx, req)
		if err != nil || d.GetAllowed() {
			t.Fatalf("second: got (%v, %v), want refused", d, err)
		}
		e := d.Err()
		if status.Code(e) != codes.ResourceExhausted {
			t.Fatalf("Err: got %v, want RESOURCE_EXHAUSTED", e)
		}
		if got, ok := clients.RetryDelay(e); !ok || got <= 0 {
			t.Fatalf("RetryDelay: got (%v, %v), want positive", got, ok)
		}
	})

	t.Run("Authorize", func(t *testing.T) {
		alice := &wardenv1.Principal{Subject: "alice", Roles: []string{"reader"}, Method: wardenv1.AuthMethod_AUTH_METHOD_API_KEY}
		for _, tc := range []struct {
			name   string
			action string
			owner  string
			want   codes.Code
		}{
			{"own order", "orders:read", "alice", codes.OK},
			{"someone else's order looks missing", "orders:read", "bob", codes.NotFound},
			{"missing permission", "orders:write", "alice", codes.PermissionDenied},
		} {
			d, err := wc.Authorize(ctx, &wardenv1.AuthorizeRequest{
				Subject:  &wardenv1.AuthorizeRequest_Principal{Principal: alice},
				Action:   tc.action,
				Resource: &wardenv1.Resource{Type: "orders", Id: "o-1", Owner: tc.owner},
			})
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got := status.Code(d.Err()); got != tc.want {
				t.Errorf("%s: got %v (http %d), want %v", tc.name, got, d.GetHttpStatus(), tc.want)
			}
		}
	})

	t.Run("middleware", func(t *testing.T) {
		var sawHeader string
		h := clients.Middleware(wc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sawHeader = r.Header.Get("X-Warden-Subject")
			_, _ = w.Write([]byte("ok"))
		}))
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)

		req, _ := http.NewRequest("GET", srv.URL+"/v1/ping", nil)
		req.Header.Set("X-Warden-Subject", "forged")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || sawHeader == "forged" {
			t.Fatalf("GET /v1/ping: got %d, handler saw x-warden-subject %q; want 200 and the client's value removed", resp.StatusCode, sawHeader)
		}

		resp, err = srv.Client().Get(srv.URL + "/v1/limited")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("RateLimit-Policy") == "" {
			t.Fatalf("first /v1/limited: got %d %v, want 200 with RateLimit-Policy", resp.StatusCode, resp.Header)
		}
		resp, err = srv.Client().Get(srv.URL + "/v1/limited")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 429 || body.Error.Code != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("RateLimit") == "" {
			t.Fatalf("second /v1/limited: got %d %v %+v (%v), want 429 with Retry-After, RateLimit and a JSON body", resp.StatusCode, resp.Header, body, err)
		}
	})
}
