package main

// envoyproxy/ratelimit's own integration expectations, run against the real warden binary
// on the memory store and on a real Redis: test/integration/integration_test.go and
// integration-test/scripts/*.sh of github.com/envoyproxy/ratelimit (at f2fb157). The peer's
// configs are restated below (not copied); each case cites the peer file and line it comes
// from. The scripts go through Envoy: each curl is restated as the ShouldRateLimit call
// Envoy makes for it (examples/envoy/proxy.yaml: a rate_limits entry is one descriptor,
// dropped when one of its headers is missing). Sleeps that wait for the next minute are left
// out; the durations of cases that depend on a minute window start early in a minute.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/internal/redistest"
	"github.com/wardenhq/warden/internal/testutil"
)

// The peer's configs, restated: test/integration/runtime/current/ratelimit/config/
// basic.yaml, another.yaml, share_threshold.yaml, and examples/ratelimit/config/example.yaml
// (the scripts' config; domain rl).
var peerConfigs = map[string]string{
	"basic.yaml": `domain: basic
descriptors:
  - {key: key1, rate_limit: {unit: second, requests_per_unit: 50}}
  - {key: one_per_minute, rate_limit: {unit: minute, requests_per_unit: 1}}
`,
	"another.yaml": `domain: another
descriptors:
  - {key: key2, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: key3, rate_limit: {unit: hour, requests_per_unit: 10}}
  - {key: key4, rate_limit: {unit: day, requests_per_unit: 20}}
`,
	"share.yaml": `domain: share-threshold-test
descriptors:
  - {key: files, value: files/*, share_threshold: true, rate_limit: {unit: hour, requests_per_unit: 10}}
  - {key: files_no_share, value: files_no_share/*, rate_limit: {unit: hour, requests_per_unit: 10}}
`,
	"rl.yaml": `domain: rl
descriptors:
  - key: category
    value: account
    rate_limit: {replaces: [{name: bkthomps}, {name: fake_name}], unit: minute, requests_per_unit: 4}
  - key: source_cluster
    value: proxy
    descriptors:
      - {key: destination_cluster, value: bkthomps, rate_limit: {replaces: [{name: bkthomps}], unit: minute, requests_per_unit: 2}}
      - {key: destination_cluster, value: mock, rate_limit: {unit: minute, requests_per_unit: 1}}
      - {key: destination_cluster, value: override, rate_limit: {replaces: [{name: banned_limit}], unit: minute, requests_per_unit: 2}}
      - {key: destination_cluster, value: fake, rate_limit: {name: fake_name, unit: minute, requests_per_unit: 2}}
  - key: foo
    rate_limit: {unit: minute, requests_per_unit: 2}
    descriptors:
      - {key: bar, rate_limit: {unit: minute, requests_per_unit: 3}}
      - {key: bar, value: bkthomps, rate_limit: {name: bkthomps, unit: minute, requests_per_unit: 1}}
      - {key: bar, value: banned, rate_limit: {name: banned_limit, unit: minute, requests_per_unit: 0}}
      - {key: baz, rate_limit: {unit: second, requests_per_unit: 1}}
      - {key: baz, value: not-so-shady, rate_limit: {unit: minute, requests_per_unit: 3}}
      - {key: baz, value: shady, shadow_mode: true, rate_limit: {unit: minute, requests_per_unit: 3}}
      - {key: bay, rate_limit: {unlimited: true}}
  - {key: unspec, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 2}}
  - {key: qux, rate_limit: {unlimited: true}}
` + peerServices,
	// The quota scripts share example.yaml's service counters within a minute, which the
	// peer's runner separates by waiting a minute between scripts: here each gets its own
	// domain holding the same two descriptors.
	"quota.yaml":        "domain: quota\ndescriptors:\n" + peerServices,
	"tokenquota.yaml":   "domain: tokenquota\ndescriptors:\n" + peerServices,
	"multiservice.yaml": "domain: multiservice\ndescriptors:\n" + peerServices,
}

// peerServices: examples/ratelimit/config/example.yaml's quota-mode descriptors.
const peerServices = `  - {key: service, value: service_1, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 1}}
  - {key: service, value: service_2, quota_mode: true, rate_limit: {unit: minute, requests_per_unit: 2}}
`

// pd is one request descriptor: "key=value" entries, and an optional per-descriptor
// hits_addend (-1: none).
type pd struct {
	kv   []string
	hits int64
}

func d(kv ...string) pd              { return pd{kv: kv, hits: -1} }
func dh(hits int64, kv ...string) pd { return pd{kv: kv, hits: hits} }

// st is a descriptor status as the peer answers it: code, current limit (rpu 0: none),
// remaining.
type st struct {
	code      rlsv3.RateLimitResponse_Code
	rpu       uint32
	unit      rlsv3.RateLimitResponse_RateLimit_Unit
	remaining uint32
}

type peerStep struct {
	domain string
	hits   uint32 // the request's hits_addend (0: Envoy's default, 1)
	descs  []pd
	want   rlsv3.RateLimitResponse_Code
	// statuses, when set, are compared with the response's (code, limit, remaining; a
	// duration_until_reset is required with a limit, as the peer gives).
	statuses []st
	times    int // the step repeated (0: once)
}

type peerCase struct {
	name, cite string
	steps      []peerStep
	// each returns the steps of a loop whose expectations depend on the iteration.
	each func() []peerStep
	// metrics lines that /metrics must hold after the case (peer_stats: true).
	metrics []string
	// minute: the case's counts must fit in one minute window (or hour: its boundaries are
	// minute boundaries).
	minute bool
}

const (
	OK   = rlsv3.RateLimitResponse_OK
	OVER = rlsv3.RateLimitResponse_OVER_LIMIT
	SEC  = rlsv3.RateLimitResponse_RateLimit_SECOND
	MIN  = rlsv3.RateLimitResponse_RateLimit_MINUTE
	HOUR = rlsv3.RateLimitResponse_RateLimit_HOUR
)

func peerCases() []peerCase {
	const it = "test/integration/integration_test.go"
	const sc = "integration-test/scripts/"
	return []peerCase{
		{name: "unknown domain", cite: it + ":560-572", steps: []peerStep{
			{domain: "foo", descs: []pd{d("hello", "world")}, want: OK, statuses: []st{{code: OK}}}},
			metrics: []string{"ratelimit_service_config_load_success 1"}}, // the peer's name, no _total
		{name: "basic key1", cite: it + ":581-601", steps: []peerStep{
			{domain: "basic", descs: []pd{d("key1", "foo")}, want: OK, statuses: []st{{OK, 50, SEC, 49}}}},
			metrics: []string{`ratelimit_service_rate_limit_total_hits{domain="basic",key1="key1"} 1`}},
		{name: "another key2 over limit, then key2 and key3", cite: it + ":614-766", minute: true, each: func() []peerStep {
			var steps []peerStep
			for i := range 25 { // the first loop
				code, rem := OK, uint32(20-(i+1))
				if i >= 20 {
					code, rem = OVER, 0
				}
				steps = append(steps, peerStep{domain: "another", descs: []pd{d("key2", "r1")}, want: code, statuses: []st{{code, 20, MIN, rem}}})
			}
			for i := range 15 { // the second loop, two descriptors
				code, rem2 := OK, uint32(10-(i+1))
				if i >= 10 {
					code, rem2 = OVER, 0
				}
				steps = append(steps, peerStep{domain: "another", descs: []pd{d("key2", "r2"), d("key3", "r2")}, want: code,
					statuses: []st{{OK, 20, MIN, uint32(20 - (i + 1))}, {code, 10, HOUR, rem2}}})
			}
			return steps
		}, metrics: []string{ // :640-650, :714-735
			`ratelimit_service_rate_limit_total_hits{domain="another",key1="key2"} 40`,
			`ratelimit_service_rate_limit_over_limit{domain="another",key1="key2"} 5`,
			`ratelimit_service_rate_limit_total_hits{domain="another",key1="key3"} 15`,
			`ratelimit_service_rate_limit_over_limit{domain="another",key1="key3"} 5`,
		}},
		{name: "share_threshold", cite: it + ":936-990", minute: true, each: func() []peerStep {
			steps := []peerStep{{domain: "share-threshold-test", descs: []pd{d("files", "files/a.pdf")}, times: 10, want: OK},
				{domain: "share-threshold-test", descs: []pd{d("files", "files/b.csv")}, want: OVER, statuses: []st{{OVER, 10, HOUR, 0}}}}
			for i := range 10 {
				steps = append(steps, peerStep{domain: "share-threshold-test", descs: []pd{d("files_no_share", fmt.Sprintf("files_no_share/%d", i))},
					want: OK, statuses: []st{{OK, 10, HOUR, 9}}})
			}
			return steps
		}},
		{name: "simple-get", cite: sc + "simple-get.sh:4", steps: []peerStep{
			{domain: "rl", descs: []pd{d("foo", "test", "baz", "shady")}, want: OK}}},
		{name: "trigger-ratelimit", cite: sc + "trigger-ratelimit.sh:8-24", minute: true, steps: []peerStep{
			{domain: "rl", descs: []pd{d("foo", "pelle", "baz", "not-so-shady")}, times: 3, want: OK},
			{domain: "rl", descs: []pd{d("foo", "pelle", "baz", "not-so-shady")}, want: OVER, times: 2}}},
		{name: "trigger-shadow-mode-key", cite: sc + "trigger-shadow-mode-key.sh:9-20", minute: true, steps: []peerStep{
			{domain: "rl", descs: []pd{d("foo", "pelle", "baz", "shady")}, times: 6, want: OK}},
			metrics: []string{`ratelimit_service_rate_limit_shadow_mode{domain="rl",key1="foo",key2="baz_shady"} 3`}},
		{name: "replaces", cite: sc + "replaces.sh:29-108", minute: true, steps: []peerStep{
			{domain: "rl", descs: []pd{d("foo", "bkthomps", "bar", "banned")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "bkthomps", "bar", "banned"), d("source_cluster", "proxy", "destination_cluster", "mock")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "bkthomps", "bar", "banned"), d("source_cluster", "proxy", "destination_cluster", "override")}, times: 2, want: OK},
			{domain: "rl", descs: []pd{d("foo", "bkthomps", "bar", "banned"), d("source_cluster", "proxy", "destination_cluster", "override")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "bkthomps")}, times: 2, want: OK},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "bkthomps")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "not_bkthomps")}, want: OK},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "not_bkthomps")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "bkthomps")}, want: OVER},
			{domain: "rl", descs: []pd{d("foo", "my_foo", "bar", "bkthomps"), d("source_cluster", "proxy", "destination_cluster", "fake"), d("category", "account")}, times: 3, want: OK},
		}},
		{name: "quota", cite: sc + "quota.sh:8-27", minute: true, steps: []peerStep{
			// /quota: two quota-mode descriptors; refused only when both are over (the
			// script's third check greps the body of a failed curl -f, so it cannot fail:
			// restated with the peer's rule, src/service/ratelimit.go).
			{domain: "quota", descs: []pd{d("service", "service_1"), d("service", "service_2")}, times: 2, want: OK},
			{domain: "quota", descs: []pd{d("service", "service_1"), d("service", "service_2")}, want: OVER}}},
		{name: "token-quota", cite: sc + "token-quota.sh:9-29", minute: true, each: func() []peerStep {
			// Each request: a check with hits_addend 0, then the charge of 1 when the
			// stream is done (examples/envoy/proxy.yaml:252-265).
			var steps []peerStep
			for i := 1; i <= 4; i++ {
				want := OK
				if i == 4 {
					want = OVER
				}
				steps = append(steps, peerStep{domain: "tokenquota", descs: []pd{dh(0, "service", "service_2")}, want: want})
				if want == OK {
					steps = append(steps, peerStep{domain: "tokenquota", descs: []pd{dh(1, "service", "service_2")}, want: -1})
				}
			}
			return steps
		}},
		{name: "multiservice-tokenquota", cite: sc + "multiservice-tokenquota.sh:11-34", minute: true, each: func() []peerStep {
			// Checks of both services with hits_addend 0; Envoy routes to the service whose
			// quota is not over (requests 1-2: service 1, 3-5: service 2, as the script
			// greps) and charges it 1 when the stream is done (proxy.yaml:267-298).
			var steps []peerStep
			for _, to := range []string{"service_1", "service_1", "service_2", "service_2", "service_2", ""} {
				want := OK
				if to == "" {
					want = OVER
				}
				steps = append(steps, peerStep{domain: "multiservice", descs: []pd{dh(0, "service", "service_1"), dh(0, "service", "service_2")}, want: want})
				if to != "" {
					steps = append(steps, peerStep{domain: "multiservice", descs: []pd{dh(1, "service", to)}, want: -1})
				}
			}
			return steps
		}},
		{name: "value-included-in-stats-key-when-unspecified", cite: sc + "value-included-in-stats-key-when-unspecified.sh:9-30", minute: true,
			steps: []peerStep{
				{domain: "rl", descs: []pd{d("unspec", "unspecified_value")}, times: 2, want: OK},
				{domain: "rl", descs: []pd{d("unspec", "unspecified_value")}, want: OVER}},
			metrics: []string{`ratelimit_service_rate_limit_over_limit{domain="rl",key1="unspec_unspecified_value"} 1`}},
		{name: "duration until reset", cite: it + ":768-779", each: func() []peerStep { return nil }},
	}
}

func (s peerStep) request() *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: s.domain, HitsAddend: s.hits}
	for _, x := range s.descs {
		var dd commonrl.RateLimitDescriptor
		for i := 0; i+1 < len(x.kv); i += 2 {
			dd.Entries = append(dd.Entries, &commonrl.RateLimitDescriptor_Entry{Key: x.kv[i], Value: x.kv[i+1]})
		}
		if x.hits >= 0 {
			dd.HitsAddend = wrapperspb.UInt64(uint64(x.hits))
		}
		req.Descriptors = append(req.Descriptors, &dd)
	}
	return req
}

// peerWarden runs the binary on the peer's configs (store: the redis section, "" for
// memory) with the peer's stat names on.
func peerWarden(t *testing.T, redisSection string) (*process, string) {
	t.Helper()
	dir := t.TempDir()
	rl := filepath.Join(dir, "ratelimit")
	if err := os.Mkdir(rl, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range peerConfigs {
		if err := os.WriteFile(filepath.Join(rl, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "server:\n  drain: 1ms\n" + redisSection + "envoy:\n  ratelimit_config: ratelimit\n  rls: {peer_stats: true}\n"
	p := filepath.Join(dir, "warden.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return startProcess(t, wardenBinary(t), p), rl
}

func TestPeerIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary twice")
	}
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			section := ""
			if store == "redis" {
				section = "redis:\n  addrs: [" + redistest.Start(t).Addr() + "]\n"
			}
			p, dir := peerWarden(t, section)
			c := rlsv3.NewRateLimitServiceClient(dial(t, p.addr))
			passed := 0
			cases := peerCases()
			for _, pc := range cases {
				ok := t.Run(pc.name, func(t *testing.T) {
					t.Logf("peer: %s", pc.cite)
					runPeerCase(t, c, p, pc)
				})
				if ok {
					passed++
				}
			}
			if t.Run("config reload", func(t *testing.T) { peerReload(t, c, p, dir) }) {
				passed++
			}
			t.Logf("%s: %d of %d peer cases pass", store, passed, len(cases)+1)
			// The peer's request counter and response time (its default_mapper.yaml).
			_, body := httpGet(t, "http://"+p.admin+"/metrics")
			for _, prefix := range []string{`ratelimit_service_total_requests{grpc_method="ShouldRateLimit"} `,
				`ratelimit_service_response_time_seconds_bucket{grpc_method="ShouldRateLimit",le="0.005"} `} {
				if !strings.Contains(body, "\n"+prefix) {
					t.Errorf("/metrics: no %q", prefix)
				}
			}
		})
	}
}

func runPeerCase(t *testing.T, c rlsv3.RateLimitServiceClient, p *process, pc peerCase) {
	if pc.name == "duration until reset" {
		// The same key twice, a little over a second apart: less time left the second time.
		r := peerStep{domain: "another", descs: []pd{d("key4", "durTest")}}
		first := should(t, c, r.request())
		time.Sleep(1100 * time.Millisecond)
		second := should(t, c, r.request())
		a, b := first.GetStatuses()[0].GetDurationUntilReset().GetSeconds(), second.GetStatuses()[0].GetDurationUntilReset().GetSeconds()
		if b >= a {
			t.Errorf("duration_until_reset: got %d then %d s, want less the second time", a, b)
		}
		return
	}
	if pc.minute {
		// Counts that must fit in one minute window: start at least 5 s before its end.
		if s := time.Now().Second(); s >= 55 {
			time.Sleep(time.Duration(61-s) * time.Second)
		}
	}
	steps := pc.steps
	if pc.each != nil {
		steps = pc.each()
	}
	for i, s := range steps {
		for range max(s.times, 1) {
			resp := should(t, c, s.request())
			if s.want < 0 {
				continue // a charge after the stream: its answer is not used
			}
			if resp.GetOverallCode() != s.want {
				t.Fatalf("step %d (%v): got %v, want %v", i, s.descs, resp.GetOverallCode(), s.want)
			}
			for j, w := range s.statuses {
				g := resp.GetStatuses()[j]
				if g.GetCode() != w.code || g.GetCurrentLimit().GetRequestsPerUnit() != w.rpu || g.GetCurrentLimit().GetUnit() != w.unit ||
					g.GetLimitRemaining() != w.remaining || (w.rpu > 0) != (g.GetDurationUntilReset() != nil) {
					t.Fatalf("step %d status %d: got %v, want %+v", i, j, g, w)
				}
				if w.rpu == 0 && g.GetCurrentLimit() != nil {
					t.Fatalf("step %d status %d: got current_limit %v, want none", i, j, g.GetCurrentLimit())
				}
			}
		}
	}
	if len(pc.metrics) > 0 {
		_, body := httpGet(t, "http://"+p.admin+"/metrics")
		for _, m := range pc.metrics {
			if !hasLine(body, m) {
				t.Errorf("/metrics: no line %q; peer lines:\n%s", m, grepLines(body, "ratelimit_service_"))
			}
		}
	}
}

// peerReload: test/integration/integration_test.go:806-860 (testConfigReload with
// reloadNewConfigFile, :862-900): a file added to the config directory loads (domain reload,
// restated from test/integration/runtime/current/ratelimit/reload.yaml), and config_load_success
// counts it; its removal reloads again. Then a file the peer refuses counts
// config_load_error and keeps the running config.
func peerReload(t *testing.T, c rlsv3.RateLimitServiceClient, p *process, dir string) {
	t.Logf("peer: test/integration/integration_test.go:806-860")
	block := peerStep{domain: "reload", descs: []pd{d("block", "foo")}, want: OK, statuses: []st{{code: OK}}}
	runPeerCase(t, c, p, peerCase{steps: []peerStep{block}})
	loads := func(name string, n int) func() bool {
		return func() bool {
			_, body := httpGet(t, "http://"+p.admin+"/metrics")
			return hasLine(body, fmt.Sprintf("ratelimit_service_config_load_%s %d", name, n))
		}
	}
	file := filepath.Join(dir, "reload.yaml")
	if err := os.WriteFile(file, []byte(`domain: reload
descriptors:
  - {key: key1, rate_limit: {unit: second, requests_per_unit: 50}}
  - {key: block, rate_limit: {unit: second, requests_per_unit: 0}}
  - {key: one_per_minute, rate_limit: {unit: minute, requests_per_unit: 1}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "config_load_success 2", loads("success", 2))
	runPeerCase(t, c, p, peerCase{steps: []peerStep{
		{domain: "reload", descs: []pd{d("key1", "foo")}, want: OK, statuses: []st{{OK, 50, SEC, 49}}},
		{domain: "reload", descs: []pd{d("block", "foo")}, want: OVER}}})
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "config_load_success 3", loads("success", 3))
	runPeerCase(t, c, p, peerCase{steps: []peerStep{block}})
	if err := os.WriteFile(file, []byte("domain: reload\ndescriptors:\n  - {key: k, rate_limit: {unit: fortnight, requests_per_unit: 1}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "config_load_error 1", loads("error", 1))
	runPeerCase(t, c, p, peerCase{steps: []peerStep{block}})
}

func should(t *testing.T, c rlsv3.RateLimitServiceClient, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := c.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v): %v", req, err)
	}
	return resp
}

func hasLine(body, line string) bool {
	for _, l := range strings.Split(body, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func grepLines(body, substr string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
