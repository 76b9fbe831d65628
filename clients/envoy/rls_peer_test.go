package envoy_test

// envoyproxy/ratelimit's answers where Envoy sees them, restated from its tests (each case
// cites the peer's file and line, github.com/envoyproxy/ratelimit at f2fb157) and run through
// the real adapter, service and limiter on the memory store, over gRPC with Envoy's protos.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/redisstore"
	"github.com/wardenhq/warden/limiter/rlconfig"
	"github.com/wardenhq/warden/service"
)

// peerRLS serves the adapter in front of a real Warden whose limits are the given peer-format
// files.
func peerRLS(t *testing.T, files ...string) rlsv3.RateLimitServiceClient {
	t.Helper()
	return peerRLSWith(t, envoy.RateLimitConfig{}, files...)
}

func peerRLSWith(t *testing.T, cfg envoy.RateLimitConfig, files ...string) rlsv3.RateLimitServiceClient {
	t.Helper()
	return peerRLSOn(t, memstore.New(memstore.Options{}), cfg, files...)
}

func peerRLSOn(t *testing.T, store limiter.Store, cfg envoy.RateLimitConfig, files ...string) rlsv3.RateLimitServiceClient {
	t.Helper()
	var domains []limiter.Domain
	for _, f := range files {
		d, err := rlconfig.Parse("peer.yaml", []byte(f))
		if err != nil {
			t.Fatal(err)
		}
		domains = append(domains, d)
	}
	lim, err := limiter.New(limiter.Config{Store: store, Domains: domains, StoreTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Limiter: lim}})
	_, rls := serveEnvoy(t, nil, envoy.NewRateLimitServer(srv, cfg))
	return rls
}

// peerAnother restates test/integration/runtime/current/ratelimit/config/another.yaml (the
// part the cases use), plus a named limit, a ban its override replaces, and two quotas.
const peerAnother = `domain: another
descriptors:
  - key: key2
    rate_limit:
      unit: minute
      requests_per_unit: 20
  - key: named
    rate_limit:
      name: per_named
      unit: minute
      requests_per_unit: 10
  - key: bar
    value: banned
    rate_limit: {name: banned_limit, unit: minute, requests_per_unit: 0}
  - key: override
    rate_limit:
      replaces: [{name: banned_limit}]
      unit: minute
      requests_per_unit: 2
  - {key: regular, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: quota, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 3}}
  - {key: quota2, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 10}}
`

func should(t *testing.T, c rlsv3.RateLimitServiceClient, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := c.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	return resp
}

func rlReq(domain string, hits uint32, descs ...*commonrl.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: hits, Descriptors: descs}
}

// TestPeerOverLimit: test/integration/integration_test.go:616-636, 25 requests on a 20 per
// minute limit: limit_remaining counts down to 0 and stays 0 when over, current_limit has no
// name (the config gives none), duration_until_reset is whole seconds.
func TestPeerOverLimit(t *testing.T) {
	c := peerRLS(t, peerAnother)
	for i := range 25 {
		resp := should(t, c, rlReq("another", 1, desc(nil, "key2", "a-random-value")))
		st := resp.GetStatuses()[0]
		wantCode, wantRemaining := rlsv3.RateLimitResponse_OK, uint32(20-(i+1))
		if i >= 20 {
			wantCode, wantRemaining = rlsv3.RateLimitResponse_OVER_LIMIT, 0
		}
		if resp.GetOverallCode() != wantCode || st.GetCode() != wantCode || st.GetLimitRemaining() != wantRemaining {
			t.Fatalf("request %d: got %v/%v remaining %d, want %v remaining %d", i+1, resp.GetOverallCode(), st.GetCode(), st.GetLimitRemaining(), wantCode, wantRemaining)
		}
		cl := st.GetCurrentLimit()
		if cl.GetName() != "" || cl.GetRequestsPerUnit() != 20 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE {
			t.Fatalf("request %d: current_limit %v, want 20 per MINUTE and no name", i+1, cl)
		}
		if d := st.GetDurationUntilReset(); d.GetNanos() != 0 || d.GetSeconds() < 1 || d.GetSeconds() > 60 {
			t.Fatalf("request %d: duration_until_reset %v, want whole seconds in [1, 60]", i+1, d)
		}
	}
}

// TestPeerHitsAddendOverLimit: src/limiter/base_limiter.go:112-115, an OVER_LIMIT status
// reports limit_remaining 0, whatever hits_addend took it there.
func TestPeerHitsAddendOverLimit(t *testing.T) {
	c := peerRLS(t, peerAnother)
	should(t, c, rlReq("another", 4, desc(nil, "named", "x")))
	st := should(t, c, rlReq("another", 7, desc(nil, "named", "x"))).GetStatuses()[0]
	if st.GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT || st.GetLimitRemaining() != 0 {
		t.Errorf("got %v remaining %d, want OVER_LIMIT remaining 0", st.GetCode(), st.GetLimitRemaining())
	}
	// test/config/config_test.go:172: a name the config gives is the limit's name.
	if got := st.GetCurrentLimit().GetName(); got != "per_named" {
		t.Errorf("current_limit.name %q, want per_named", got)
	}
}

// TestPeerEmptyRequest: test/service/ratelimit_test.go:463-483, an empty domain or descriptor
// list is an error.
func TestPeerEmptyRequest(t *testing.T) {
	c := peerRLS(t, peerAnother)
	for _, tt := range []struct {
		peer string
		req  *rlsv3.RateLimitRequest
		msg  string
	}{
		{"test/service/ratelimit_test.go:471", rlReq("", 1, desc(nil, "key2", "x")), "rate limit domain must not be empty"},
		{"test/service/ratelimit_test.go:483", rlReq("another", 1), "rate limit descriptor list must not be empty"},
	} {
		_, err := c.ShouldRateLimit(context.Background(), tt.req)
		if s, _ := status.FromError(err); s.Code() != codes.InvalidArgument || s.Message() != tt.msg {
			t.Errorf("%s: got %v, want INVALID_ARGUMENT %q", tt.peer, err, tt.msg)
		}
	}
}

// TestPeerReplacesBan: examples/ratelimit/config/example.yaml:28-32 (override replaces
// banned_limit, a requests_per_unit 0 limit), as integration-test/scripts/* send it.
func TestPeerReplacesBan(t *testing.T) {
	c := peerRLS(t, peerAnother)
	if resp := should(t, c, rlReq("another", 1, desc(nil, "bar", "banned"))); resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("the ban alone: got %v, want OVER_LIMIT", resp.GetOverallCode())
	}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp := should(t, c, rlReq("another", 1, desc(nil, "bar", "banned"), desc(nil, "override", "x")))
		if resp.GetOverallCode() != want || resp.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("ban + override, request %d: got %v (ban status %v), want %v with the ban replaced", i+1, resp.GetOverallCode(), resp.GetStatuses()[0].GetCode(), want)
		}
	}
}

// TestPeerQuotaMode: test/service/ratelimit_test.go:915-963 and :1070-1160
// (src/service/ratelimit.go:253): a quota-mode descriptor over its limit is OVER_LIMIT in its
// status, but the request is refused for quotas only when all of them are over; a regular
// limit refuses on its own.
func TestPeerQuotaMode(t *testing.T) {
	c := peerRLS(t, peerAnother)
	for i := range 5 {
		resp := should(t, c, rlReq("another", 1, desc(nil, "regular", "r"), desc(nil, "quota", "q"), desc(nil, "quota2", "q")))
		wantQuota := rlsv3.RateLimitResponse_OK
		if i >= 3 {
			wantQuota = rlsv3.RateLimitResponse_OVER_LIMIT
		}
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[1].GetCode() != wantQuota {
			t.Errorf("request %d: got %v, quota %v; want OK, quota %v", i+1, resp.GetOverallCode(), resp.GetStatuses()[1].GetCode(), wantQuota)
		}
	}
	// The regular limit (5) is now spent: it refuses whatever the quota says.
	if resp := should(t, c, rlReq("another", 1, desc(nil, "regular", "r"), desc(nil, "quota2", "q"))); resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("regular over: got %v, want OVER_LIMIT", resp.GetOverallCode())
	}
	// Only quotas, all over: refused.
	if resp := should(t, c, rlReq("another", 1, desc(nil, "quota", "q"))); resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("all quotas over: got %v, want OVER_LIMIT", resp.GetOverallCode())
	}
}

// TestPeerLimitOverride: test/config/config_test.go:256-345, the limit Envoy sends from route
// metadata replaces the configured one, keyed by the descriptor's entries, and applies to
// entries no configured descriptor matches; an unknown domain applies none (:262).
func TestPeerLimitOverride(t *testing.T) {
	c := peerRLS(t, peerAnother)
	override := func(kv ...string) *commonrl.RateLimitDescriptor {
		d := desc(nil, kv...)
		d.Limit = &commonrl.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_DAY}
		return d
	}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		st := should(t, c, rlReq("another", 1, override("key1", "value1", "subkey1", "something"))).GetStatuses()[0]
		cl := st.GetCurrentLimit()
		if st.GetCode() != want || cl.GetRequestsPerUnit() != 2 || cl.GetUnit() != rlsv3.RateLimitResponse_RateLimit_DAY || cl.GetName() != "" {
			t.Errorf("request %d: got %v, %v; want %v under 2 per DAY, no name", i+1, st.GetCode(), cl, want)
		}
	}
	// test/config/config_test.go:316: other entries count apart.
	if st := should(t, c, rlReq("another", 1, override("key1", "value1", "subkey1", "something_else"))).GetStatuses()[0]; st.GetCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("other entries: got %v, want OK", st.GetCode())
	}
	if st := should(t, c, rlReq("foo_domain", 1, override("key1", "value1"))).GetStatuses()[0]; st.GetCurrentLimit() != nil {
		t.Errorf("unknown domain: got %v, want no limit", st)
	}
}

// TestPeerHitsAddendPerDescriptor: src/utils/utilities.go:80-95 (GetHitsAddends), a
// descriptor's own hits_addend, 0 included, beats the request's; is_negative_hits, which the
// peer ignores (counting a refund as hits), is refused.
func TestPeerHitsAddendPerDescriptor(t *testing.T) {
	c := peerRLS(t, peerAnother)
	zero := uint64(0)
	for range 3 {
		should(t, c, rlReq("another", 5, desc(&zero, "named", "y")))
	}
	st := should(t, c, rlReq("another", 3, desc(nil, "named", "y"))).GetStatuses()[0]
	if st.GetLimitRemaining() != 7 {
		t.Errorf("after three checks of cost 0 and one of 3: remaining %d, want 7", st.GetLimitRemaining())
	}
	neg := desc(nil, "named", "y")
	neg.IsNegativeHits = true
	neg.HitsAddend = wrapperspb.UInt64(2)
	_, err := c.ShouldRateLimit(context.Background(), rlReq("another", 1, neg))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("is_negative_hits: got %v, want INVALID_ARGUMENT", err)
	}
}

// TestPeerLimitHeaders: test/service/ratelimit_test.go:351-408 (custom names) and :410-461
// (default names): with LIMIT_RESPONSE_HEADERS_ENABLED, the limit over its limit gives
// RateLimit-Limit 10, RateLimit-Remaining 0 and RateLimit-Reset the seconds left in its
// minute; a descriptor no limit applies to adds nothing.
func TestPeerLimitHeaders(t *testing.T) {
	const cfg = "domain: different-domain\ndescriptors:\n  - key: foo\n    rate_limit: {unit: minute, requests_per_unit: 10}\n"
	for _, tt := range []struct {
		peer  string
		cfg   envoy.RateLimitConfig
		names [3]string
	}{
		{"test/service/ratelimit_test.go:351", envoy.RateLimitConfig{LimitResponseHeaders: true, LimitHeader: "A-Ratelimit-Limit", RemainingHeader: "A-Ratelimit-Remaining", ResetHeader: "A-Ratelimit-Reset"},
			[3]string{"A-Ratelimit-Limit", "A-Ratelimit-Remaining", "A-Ratelimit-Reset"}},
		{"test/service/ratelimit_test.go:410", envoy.RateLimitConfig{LimitResponseHeaders: true},
			[3]string{"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}},
	} {
		t.Run(tt.peer, func(t *testing.T) {
			c := peerRLSWith(t, tt.cfg, cfg)
			if h := should(t, c, rlReq("different-domain", 1, desc(nil, "hello", "world"))).GetResponseHeadersToAdd(); len(h) != 0 {
				t.Errorf("no limit applied: got headers %v, want none", h)
			}
			var resp *rlsv3.RateLimitResponse
			for range 11 {
				resp = should(t, c, rlReq("different-domain", 1, desc(nil, "foo", "bar"), desc(nil, "hello", "world")))
			}
			now := time.Now().Unix()
			h := resp.GetResponseHeadersToAdd()
			if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT || len(h) != 3 {
				t.Fatalf("got %v with headers %v, want OVER_LIMIT and three headers", resp.GetOverallCode(), h)
			}
			reset, _ := strconv.Atoi(h[2].GetValue())
			if h[0].GetKey() != tt.names[0] || h[0].GetValue() != "10" || h[1].GetKey() != tt.names[1] || h[1].GetValue() != "0" ||
				h[2].GetKey() != tt.names[2] || reset < 1 || reset > 60 || (int64(reset) != 60-now%60 && int64(reset) != 60-(now-1)%60) {
				t.Errorf("got %v, want %s: 10, %s: 0, %s: %d", h, tt.names[0], tt.names[1], tt.names[2], 60-now%60)
			}
		})
	}
}

// TestPeerTokenQuota: integration-test/scripts/token-quota.sh:9-24 with
// examples/envoy/proxy.yaml:244-263 and examples/ratelimit/config/example.yaml:96-104: Envoy
// checks with hits_addend 0 on the request path and charges 1 when the stream ends, against
// a quota-mode limit of 2 per minute. Every charge is counted, the one that went over too,
// so requests 1-3 pass and the 4th check is refused. On the memory store and on a real Redis.
func TestPeerTokenQuota(t *testing.T) {
	const cfg = `domain: rl
descriptors:
  - key: service
    value: service_2
    quota_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
`
	stores := map[string]func(t *testing.T) limiter.Store{
		"memory": func(*testing.T) limiter.Store { return memstore.New(memstore.Options{}) },
		"redis": func(t *testing.T) limiter.Store {
			srv := redistest.Start(t)
			client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { client.Close() })
			s, err := redisstore.New(client, redisstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			if name == "redis" && testing.Short() {
				t.Skip("starts redis-server")
			}
			// A minute window that does not end during the test.
			if s := time.Now().Second(); s > 50 {
				time.Sleep(time.Duration(61-s) * time.Second)
			}
			c := peerRLSOn(t, store(t), envoy.RateLimitConfig{}, cfg)
			zero, one := uint64(0), uint64(1)
			for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
				if got := should(t, c, rlReq("rl", 1, desc(&zero, "service", "service_2"))).GetOverallCode(); got != want {
					t.Fatalf("request %d, check: got %v, want %v", i+1, got, want)
				}
				if want == rlsv3.RateLimitResponse_OK {
					should(t, c, rlReq("rl", 1, desc(&one, "service", "service_2"))) // apply_on_stream_done
				}
			}
		})
	}
}

// TestPeerGlobalModes: test/service/ratelimit_test.go:220-275 (SHADOW_MODE: OVER_LIMIT
// statuses, overall OK) and :676-727 (QUOTA_MODE: OVER_LIMIT only when every descriptor is
// over).
func TestPeerGlobalModes(t *testing.T) {
	over := func(c rlsv3.RateLimitServiceClient, descs ...*commonrl.RateLimitDescriptor) *rlsv3.RateLimitResponse {
		t.Helper()
		return should(t, c, rlReq("another", 11, descs...))
	}
	t.Run("test/service/ratelimit_test.go:220", func(t *testing.T) {
		c := peerRLSWith(t, envoy.RateLimitConfig{ShadowMode: true}, peerAnother)
		if r := over(c, desc(nil, "named", "s")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK || r.GetStatuses()[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("got %v, want OK overall with an OVER_LIMIT status", r)
		}
	})
	t.Run("test/service/ratelimit_test.go:676", func(t *testing.T) {
		c := peerRLSWith(t, envoy.RateLimitConfig{QuotaMode: true}, peerAnother)
		// named (10) is over with 11, key2 (20) is not: a quota has room.
		if r := over(c, desc(nil, "named", "q"), desc(nil, "key2", "q")); r.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Errorf("one of two over: got %v, want OK", r.GetOverallCode())
		}
		// Both over now (named counted 22, key2 22).
		if r := over(c, desc(nil, "named", "q"), desc(nil, "key2", "q")); r.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("both over: got %v, want OVER_LIMIT", r.GetOverallCode())
		}
	})
}

// peerMeta restates the limits of test/service/ratelimit_test.go:729-913 with their metadata.
const peerMeta = `domain: quota-domain
descriptors:
  - {key: regular, rate_limit: {unit: minute, requests_per_unit: 10}, metadata: {name: service_1}}
  - {key: quota, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 1}, metadata: {name: service_2}}
  - {key: other, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 5}, metadata: {some_other_name: service_2, nested: {a: 1}}}
`

// TestPeerDynamicMetadata: RESPONSE_DYNAMIC_METADATA, test/service/ratelimit_test.go:729
// (only descriptors that passed give their metadata), :790 (all that passed, merged) and :854
// (the first value of a key wins); the request's domain, entries and hits_addend are there too
// (src/service/ratelimit.go:295-330).
func TestPeerDynamicMetadata(t *testing.T) {
	c := peerRLSWith(t, envoy.RateLimitConfig{DynamicMetadata: true}, peerMeta)
	meta := func(resp *rlsv3.RateLimitResponse) map[string]any {
		return resp.GetDynamicMetadata().GetFields()["metadata"].GetStructValue().AsMap()
	}
	t.Run("test/service/ratelimit_test.go:729", func(t *testing.T) {
		should(t, c, rlReq("quota-domain", 1, desc(nil, "quota", "x")))
		resp := should(t, c, rlReq("quota-domain", 1, desc(nil, "regular", "x"), desc(nil, "quota", "x")))
		if got := meta(resp); len(got) != 1 || got["name"] != "service_1" {
			t.Errorf("got %v, want {name: service_1} (the quota over its limit gives none)", got)
		}
		dm := resp.GetDynamicMetadata().AsMap()
		wantDescs := []any{map[string]any{"entries": []any{"regular=x"}}, map[string]any{"entries": []any{"quota=x"}}}
		if dm["domain"] != "quota-domain" || dm["hitsAddend"] != float64(1) || fmt.Sprint(dm["descriptors"]) != fmt.Sprint(wantDescs) {
			t.Errorf("got %v, want the domain, hitsAddend 1 and the descriptors' entries", dm)
		}
	})
	t.Run("test/service/ratelimit_test.go:790", func(t *testing.T) {
		got := meta(should(t, c, rlReq("quota-domain", 1, desc(nil, "regular", "y"), desc(nil, "other", "y"))))
		if got["name"] != "service_1" || got["some_other_name"] != "service_2" || fmt.Sprint(got["nested"]) != "map[a:1]" {
			t.Errorf("got %v, want both descriptors' metadata", got)
		}
	})
	t.Run("test/service/ratelimit_test.go:854", func(t *testing.T) {
		got := meta(should(t, c, rlReq("quota-domain", 1, desc(nil, "regular", "z"), desc(nil, "quota", "z"))))
		if got["name"] != "service_1" {
			t.Errorf("got %v, want the first descriptor's name", got)
		}
	})
	t.Run("off by default", func(t *testing.T) {
		if dm := should(t, peerRLS(t, peerMeta), rlReq("quota-domain", 1, desc(nil, "regular", "x"))).GetDynamicMetadata(); dm != nil {
			t.Errorf("got %v, want none", dm)
		}
	})
}
