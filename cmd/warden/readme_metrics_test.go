package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/wardenhq/warden/authn"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/redistest"
)

// readmeMetrics returns the metrics of README.md's Operations › Metrics table: each name to
// the words of its labels column (label names and values, in backquotes).
func readmeMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n### Metrics\n")
	if i < 0 {
		t.Fatal("README.md has no ### Metrics section")
	}
	text = text[i+1:]
	if j := strings.Index(text, "\n## "); j >= 0 {
		text = text[:j]
	}
	name, word := regexp.MustCompile("`(warden_[a-z0-9_]+)`"), regexp.MustCompile("`([a-z0-9_]+)`")
	out := map[string][]string{}
	for _, line := range strings.Split(text, "\n") {
		cols := strings.Split(line, "|")
		if !strings.HasPrefix(line, "| `") || len(cols) < 4 {
			continue
		}
		var labels []string
		for _, m := range word.FindAllStringSubmatch(cols[2], -1) {
			labels = append(labels, m[1])
		}
		for _, m := range name.FindAllStringSubmatch(cols[1], -1) {
			out[m[1]] = labels
		}
	}
	if len(out) == 0 {
		t.Fatal("README.md's metrics table lists no warden_ metric")
	}
	return out
}

// scrapedMetrics returns the warden_ metric families of a /metrics body, each with the label
// names its samples carry (OpenTelemetry's scope labels and a histogram's le left out).
func scrapedMetrics(body string) map[string][]string {
	families := map[string][]string{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" && strings.HasPrefix(f[2], "warden_") {
			families[f[2]] = nil
		}
	}
	sample := regexp.MustCompile(`^(warden_[a-z0-9_]+?)(?:_bucket|_sum|_count)?\{([^}]*)\}`)
	label := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
	for _, line := range strings.Split(body, "\n") {
		m := sample.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		fam := m[1]
		if _, ok := families[fam]; !ok {
			continue
		}
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			if n := l[1]; n != "le" && !strings.HasPrefix(n, "otel_scope_") && !slices.Contains(families[fam], n) {
				families[fam] = append(families[fam], n)
			}
		}
	}
	return families
}

// readmeConditional are the metrics of the table that TestREADMEMetricsTable's run does not
// make Warden export, and why.
var readmeConditional = map[string]string{
	"warden_ratelimit_store_unavailable_total":   "only once the store failed a decision",
	"warden_ratelimit_limit_decisions_total":     "only for limits with detailed_metric",
	"warden_ratelimit_breaker_transitions_total": "only once the breaker changed state",
}

// TestREADMEMetricsTable keeps README.md's metrics table true: a real Warden (the example
// config, on Redis) under a short load of every kind of decision and a reload; every
// warden_ metric on /metrics must be in the table with its labels, and every metric of the
// table must be exported (but for readmeConditional).
func TestREADMEMetricsTable(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	for _, f := range []string{"warden.yaml", "jwks.json"} {
		b, err := os.ReadFile(filepath.Join("../../examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "warden.yaml" {
			b = append(b, "\nredis:\n  addrs: ["+srv.Addr()+"]\n"...)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "warden.yaml")
	w := start(t, exampleEnv, "-config", cfgPath)
	cc := dial(t, w.GRPC)
	c := wardenv1.NewWardenServiceClient(cc)
	ea := authv3.NewAuthorizationClient(cc)
	rls := rlsv3.NewRateLimitServiceClient(cc)
	ctx := context.Background()
	unknownKey, _, err := authn.NewAPIKey(authn.EnvLive) // well formed: looked up in the Redis key store
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		_, _ = c.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: unknownKey}})
		_, _ = c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/healthz"}})
		_, _ = c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/users/alice/orders"}})
		_, _ = c.Authenticate(ctx, &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: "not-a-key"}})
		_, _ = c.CheckRateLimit(ctx, &wardenv1.CheckRateLimitRequest{Domain: "api",
			Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: "u"}}}}})
		_, _ = ea.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/healthz"}}}})
		_, _ = rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "api"})
	}
	resp, err := http.Get("http://" + w.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	scraped, table := scrapedMetrics(string(body)), readmeMetrics(t)
	var names []string
	for n := range scraped {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		labels, ok := table[n]
		if !ok {
			t.Errorf("%s is exported but not in README.md's metrics table (labels %v)", n, scraped[n])
			continue
		}
		for _, l := range scraped[n] {
			if !slices.Contains(labels, l) {
				t.Errorf("%s is exported with label %q, which README.md's metrics table does not name", n, l)
			}
		}
	}
	for n := range table {
		if _, ok := scraped[n]; !ok {
			if why, ok := readmeConditional[n]; ok {
				t.Logf("%s not exported in this run: %s", n, why)
				continue
			}
			t.Errorf("%s is in README.md's metrics table but Warden did not export it", n)
		}
	}
	t.Logf("%d warden_ metrics exported, %d in the table", len(scraped), len(table))
}
