package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/testutil"
)

// prometheusBinary returns the path of Debian's prometheus, skipping the test without it
// unless CI=true, where its absence is a failure (.ci/run installs it).
func prometheusBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed (CI=true): apt-get install prometheus")
		}
		t.Skip("prometheus is not installed (apt-get install prometheus)")
	}
	return p
}

// promQuery runs an instant query through Prometheus's HTTP API.
func promQuery(t *testing.T, addr, q string) ([]json.RawMessage, error) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

// dashboardExprs returns every query of the Grafana dashboard, with its template variables
// replaced as Grafana would for "all instances".
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../deploy/grafana/warden-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, strings.ReplaceAll(tg.Expr, "$instance", ".*"))
		}
	}
	return exprs
}

var (
	metricName = regexp.MustCompile(`\b((?:warden|go|process)_[a-z0-9_]+)`)
	byLabels   = regexp.MustCompile(`by \(([^)]*)\)`)
)

// TestPrometheusScrapesDashboard starts a real Prometheus scraping a real Warden under a short
// load, with the alerting rules loaded, and evaluates every dashboard query through
// Prometheus's HTTP API: each metric it names must be scraped, with each label it groups by,
// and each rule must evaluate cleanly. A renamed metric or label fails it.
func TestPrometheusScrapesDashboard(t *testing.T) {
	prom := prometheusBinary(t)
	dir := t.TempDir()
	// A copy of the example config, so that a reload can be triggered by writing it.
	for _, f := range []string{"warden.yaml", "jwks.json"} {
		b, err := os.ReadFile(filepath.Join("../../examples", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "warden.yaml")
	w := start(t, exampleEnv, "-config", cfgPath)

	rules, err := filepath.Abs("../../deploy/prometheus/warden-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	promAddr := freeAddr(t)
	promCfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: warden
    static_configs: [{targets: [%q]}]
`, rules, w.Admin)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(promCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs)
		}
	})

	// A short load: every kind of decision, over 3 s, while Prometheus scrapes every second.
	cc := dial(t, w.GRPC)
	c := wardenv1.NewWardenServiceClient(cc)
	ea := authv3.NewAuthorizationClient(cc)
	rls := rlsv3.NewRateLimitServiceClient(cc)
	rctx := context.Background()
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		_, _ = c.Check(rctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/healthz"}})
		_, _ = c.Check(rctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/v1/users/alice/orders"}})
		_, _ = c.CheckRateLimit(rctx, &wardenv1.CheckRateLimitRequest{Domain: "api",
			Descriptors: []*wardenv1.RateLimitDescriptor{{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: "u"}}}}})
		_, _ = ea.Check(rctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/healthz"}}}})
		_, _ = rls.ShouldRateLimit(rctx, &rlsv3.RateLimitRequest{Domain: "api"})
		if i == 0 { // a config reload, counted
			f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = f.WriteString("\n# touched\n")
			f.Close()
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Wait until Prometheus has scraped Warden a few times.
	testutil.WaitFor(t, 10*time.Second, "prometheus to scrape warden", func() bool {
		r, err := promQuery(t, promAddr, `count_over_time(up{job="warden"}[1m]) >= 3 and up{job="warden"} == 1`)
		return err == nil && len(r) == 1
	})
	if r, err := promQuery(t, promAddr, `warden_config_reloads_total{result="ok"} >= 1`); err != nil || len(r) != 1 {
		t.Errorf("the config reload was not counted: %v %s", err, r)
	}

	exprs := dashboardExprs(t)
	seen := map[string]bool{}
	for _, e := range exprs {
		if _, err := promQuery(t, promAddr, e); err != nil {
			t.Errorf("dashboard query fails: %v", err)
			continue
		}
		var groups []string
		for _, m := range byLabels.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "le" && l != "instance" && l != "job" {
					groups = append(groups, l)
				}
			}
		}
		names := metricName.FindAllStringSubmatch(e, -1)
		for _, m := range names {
			name := m[1]
			r, err := promQuery(t, promAddr, name)
			if err != nil || len(r) == 0 {
				t.Errorf("dashboard metric %s is not scraped from Warden (query %s)", name, e)
				continue
			}
			seen[name] = true
			// A query of one metric must group by labels that metric carries.
			for _, l := range groups {
				if len(names) == 1 && !strings.Contains(string(r[0]), `"`+l+`"`) {
					t.Errorf("dashboard groups %s by %q, which it does not carry: %s", name, l, r[0])
				}
			}
		}
	}
	t.Logf("%d dashboard queries, %d metrics, all scraped", len(exprs), len(seen))

	// Every alerting rule evaluates without error (a typo in a function or a label matcher
	// that Prometheus refuses shows here).
	testutil.WaitFor(t, 10*time.Second, "the alerting rules to be evaluated", func() bool {
		resp, err := http.Get("http://" + promAddr + "/api/v1/rules")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&r) != nil || len(r.Data.Groups) == 0 {
			return false
		}
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				if rule.Health == "unknown" {
					return false
				}
				if rule.Health != "ok" {
					t.Errorf("rule %s: %s %s", rule.Name, rule.Health, rule.LastError)
				}
			}
		}
		return true
	})
	// The alert rules' metrics are scraped too (the fail-open series of rate limits only
	// exists once a domain failed open).
	rb, err := os.ReadFile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metricName.FindAllStringSubmatch(string(rb), -1) {
		if r, err := promQuery(t, promAddr, m[1]); err != nil || len(r) == 0 {
			t.Errorf("alert rule metric %s is not scraped from Warden", m[1])
		}
	}
}
