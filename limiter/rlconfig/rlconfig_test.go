package rlconfig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/memstore"
	"github.com/wardenhq/warden/limiter/rlconfig"

	"github.com/wardenhq/warden/fielderr"
)

// newLimiter builds a limiter on the in-memory store at a fixed instant (the start of a day,
// so that every window is fresh).
func newLimiter(t *testing.T, domains []limiter.Domain) *limiter.Limiter {
	t.Helper()
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	l, err := limiter.New(limiter.Config{Store: memstore.New(memstore.Options{Now: clock}), Now: clock, Domains: domains})
	if err != nil {
		t.Fatalf("limiter.New: %v", err)
	}
	return l
}

func entries(kv ...string) []limiter.Entry {
	var out []limiter.Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, limiter.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// admitted sends n single-unit requests with the given descriptors and counts the allowed ones;
// it also returns the last result.
func admitted(t *testing.T, l *limiter.Limiter, domain string, n int, descs ...[]limiter.Entry) (int, limiter.Result) {
	t.Helper()
	req := limiter.Request{Domain: domain, Cost: 1}
	for _, d := range descs {
		req.Descriptors = append(req.Descriptors, limiter.RequestDescriptor{Entries: d})
	}
	var res limiter.Result
	ok := 0
	for range n {
		if err := l.Check(context.Background(), req, &res); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if res.Allowed {
			ok++
		}
	}
	return ok, res
}

func TestReadmeExamples(t *testing.T) {
	domains, err := rlconfig.Load("testdata/readme")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var names []string
	for _, d := range domains {
		names = append(names, d.Name)
	}
	want := []string{"mongo_cps", "messaging", "edge_proxy_per_ip", "example4", "internal", "example6", "example7", "example9"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Fatalf("domains (-want +got):\n%s", diff)
	}

	t.Run("1 key with values", func(t *testing.T) {
		l := newLimiter(t, domains)
		if got, _ := admitted(t, l, "mongo_cps", 600, entries("database", "users")); got != 500 {
			t.Errorf("users: got %d admitted, want 500", got)
		}
		if got, _ := admitted(t, l, "mongo_cps", 501, entries("database", "default")); got != 500 {
			t.Errorf("default (its own counter): got %d admitted, want 500", got)
		}
		got, res := admitted(t, l, "mongo_cps", 600, entries("database", "other"))
		if got != 600 || res.Statuses[0].Applied {
			t.Errorf("a value not configured: got %d admitted (applied=%v), want all, no limit", got, res.Statuses[0].Applied)
		}
	})
	t.Run("2 nested and value-less", func(t *testing.T) {
		l := newLimiter(t, domains)
		marketing := entries("message_type", "marketing", "to_number", "2061111111")
		any := entries("to_number", "2061111111")
		if got, _ := admitted(t, l, "messaging", 10, marketing, any); got != 5 {
			t.Errorf("marketing to one number: got %d admitted, want 5 a day", got)
		}
		if got, _ := admitted(t, l, "messaging", 5, entries("message_type", "marketing", "to_number", "2062222222")); got != 5 {
			t.Errorf("marketing to another number: got %d admitted, want its own 5", got)
		}
		// Refused requests are counted too, as in envoyproxy/ratelimit: the number has used 10
		// of its 100.
		if got, _ := admitted(t, l, "messaging", 200, any); got != 90 {
			t.Errorf("any message to the first number: got %d admitted, want the 90 left of 100", got)
		}
	})
	t.Run("3 most specific match and a ban", func(t *testing.T) {
		l := newLimiter(t, domains)
		if got, _ := admitted(t, l, "edge_proxy_per_ip", 20, entries("remote_address", "50.0.0.1")); got != 10 {
			t.Errorf("50.0.0.1: got %d admitted, want 10", got)
		}
		if got, _ := admitted(t, l, "edge_proxy_per_ip", 20, entries("remote_address", "50.0.0.2")); got != 10 {
			t.Errorf("50.0.0.2 (its own counter): got %d admitted, want 10", got)
		}
		if got, _ := admitted(t, l, "edge_proxy_per_ip", 5, entries("remote_address", "50.0.0.5")); got != 0 {
			t.Errorf("banned 50.0.0.5: got %d admitted, want 0", got)
		}
	})
	t.Run("4 depth must match", func(t *testing.T) {
		flat, err := rlconfig.Load("testdata/flat")
		if err != nil {
			t.Fatal(err)
		}
		two := entries("key", "value", "subkey", "subvalue")
		_, res := admitted(t, newLimiter(t, flat), "example4", 1, two)
		if res.Statuses[0].Applied {
			t.Error("flat config: a two-entry descriptor matched a one-level limit")
		}
		if got, _ := admitted(t, newLimiter(t, domains), "example4", 400, two); got != 300 {
			t.Errorf("nested config: got %d admitted, want 300", got)
		}
	})
	t.Run("5 unlimited", func(t *testing.T) {
		l := newLimiter(t, domains)
		got, res := admitted(t, l, "internal", 1000, entries("ldap", "x"))
		if st := res.Statuses[0]; got != 1000 || !st.Applied || !st.Unlimited {
			t.Errorf("ldap: got %d admitted, status %+v; want all, applied and unlimited", got, st)
		}
		if got, _ := admitted(t, l, "internal", 150, entries("azure", "x")); got != 100 {
			t.Errorf("azure: got %d admitted, want 100", got)
		}
	})
	t.Run("6 shadow mode", func(t *testing.T) {
		l := newLimiter(t, domains)
		got, res := admitted(t, l, "example6", 30, entries("service", "auth-service", "user", "user-a"))
		if st := res.Statuses[0]; got != 30 || st.Code != limiter.CodeOverLimit || !st.Shadow {
			t.Errorf("user-a: got %d admitted, last status %+v; want all 30, reported over limit in shadow", got, st)
		}
		if got, _ := admitted(t, l, "example6", 30, entries("service", "auth-service", "user", "user-b")); got != 20 {
			t.Errorf("user-b: got %d admitted, want 20", got)
		}
	})
	t.Run("7 replaces", func(t *testing.T) {
		l := newLimiter(t, domains)
		both := [][]limiter.Entry{entries("key_1", "value_1", "user", "bkthomps"), entries("key_2", "value_2", "user", "bkthomps")}
		if got, _ := admitted(t, l, "example7", 15, both...); got != 10 {
			t.Errorf("both descriptors: got %d admitted, want 10 (the replacing limit)", got)
		}
		if got, _ := admitted(t, l, "example7", 10, both[0]); got != 5 {
			t.Errorf("the replaced limit alone: got %d admitted, want its untouched 5", got)
		}
	})
	t.Run("9 wildcard", func(t *testing.T) {
		l := newLimiter(t, domains)
		if got, _ := admitted(t, l, "example9", 30, entries("key1", "value_1")); got != 20 {
			t.Errorf("value_1: got %d admitted, want 20", got)
		}
		if got, _ := admitted(t, l, "example9", 30, entries("key1", "value_2")); got != 20 {
			t.Errorf("value_2: got %d admitted, want its own 20", got)
		}
		if _, res := admitted(t, l, "example9", 1, entries("key1", "other")); res.Statuses[0].Applied {
			t.Error("key1=other matched the wildcard value*")
		}
	})
}

func TestConversion(t *testing.T) {
	d, err := rlconfig.Load("testdata/warden_extensions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []limiter.Domain{{
		Name:          "api",
		FailurePolicy: limiter.FailClosed,
		PeerFormat:    true,
		CountRefused:  true,
		Descriptors: []limiter.Descriptor{
			{Key: "tenant", RateLimit: &limiter.RateLimit{Algorithm: limiter.SlidingWindow, Period: 30 * time.Second, RequestsPerUnit: 60}},
			{Key: "user", RateLimit: &limiter.RateLimit{
				Name: "per_user", Algorithm: limiter.TokenBucket, Unit: "minute", RequestsPerUnit: 100, Burst: 20,
				Tiers: map[string]limiter.TierLimit{"paid": {RequestsPerUnit: 1000}, "internal": {Unlimited: true}},
			}},
		},
	}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	d2, err := rlconfig.Parse("ex.yaml", []byte("domain: d\ndescriptors:\n- key: k\n  rate_limit: {unit: MONTH, requests_per_unit: 3}\n  shadow_mode: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantRL := &limiter.RateLimit{Algorithm: limiter.FixedWindow, Period: 30 * 24 * time.Hour, RequestsPerUnit: 3}
	if diff := cmp.Diff(wantRL, d2.Descriptors[0].RateLimit); diff != "" || !d2.Descriptors[0].ShadowMode {
		t.Errorf("month unit, shadow %v (-want +got):\n%s", d2.Descriptors[0].ShadowMode, diff)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		line       int
		field, msg string
	}{
		{"empty file", "", 0, "domain", "empty domain"},
		{"no domain", "descriptors: []\n", 1, "domain", "empty domain"},
		{"unknown top key", "domain: d\nfoo: 1\n", 2, "foo", `unknown key "foo"`},
		{"unknown descriptor key", "domain: d\ndescriptors:\n  - key: a\n    vaule: x\n", 4, "descriptors[0].vaule", "unknown key"},
		{"empty key", "domain: d\ndescriptors:\n  - value: x\n", 3, "descriptors[0].key", "empty key"},
		{"bad unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: minutes\n      requests_per_unit: 1\n", 5,
			"descriptors[0].rate_limit.unit", `invalid rate limit unit "minutes"`},
		{"missing unit", "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      requests_per_unit: 1\n", 5,
			"descriptors[0].rate_limit.unit", "invalid rate limit unit"},
		{"unit with unlimited", "domain: d\ndescriptors:\n  - key: a\n    rate_limit: {unlimited: true, unit: second}\n", 4,
			"descriptors[0].rate_limit.unit", "should not specify rate limit unit when unlimited"},
		{"negative", "domain: d\ndescriptors:\n- key: a\n  rate_limit:\n    unit: second\n    requests_per_unit: -1\n", 6,
			"descriptors[0].rate_limit.requests_per_unit", "whole number"},
		{"replaces itself", "domain: d\ndescriptors:\n- key: a\n  rate_limit:\n    name: n\n    unit: second\n    requests_per_unit: 1\n    replaces:\n      - name: n\n", 9,
			"descriptors[0].rate_limit.replaces[0].name", "same descriptor"},
		{"duplicate descriptor (limiter validation)", "domain: d\ndescriptors:\n- key: a\n  value: v\n- key: b\n- key: a\n  value: v\n", 6,
			"descriptors[2]", "duplicate descriptor"},
		{"bad algorithm", "domain: d\ndescriptors:\n- key: a\n  rate_limit: {unit: second, requests_per_unit: 1, algorithm: leaky}\n", 4,
			"descriptors[0].rate_limit.algorithm", "unknown algorithm"},
		{"unit and period", "domain: d\ndescriptors:\n- key: a\n  rate_limit:\n    unit: second\n    period: 2s\n    requests_per_unit: 1\n", 6,
			"descriptors[0].rate_limit.period", "not both"},
		{"descriptors not a list", "domain: d\ndescriptors: {key: a}\n", 2, "descriptors", "list"},
		{"syntax", "domain: d\ndescriptors:\n  - key: a\n   value: b\n", 2, "", "expected"},
		{"two documents", "domain: d\n---\ndomain: e\n", 2, "", "one domain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := rlconfig.Parse("f.yaml", []byte(tt.yaml))
			var e *fielderr.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *fielderr.Error", err)
			}
			if e.File != "f.yaml" || e.Line != tt.line || e.Path != tt.field || !strings.Contains(e.Msg(), tt.msg) {
				t.Errorf("got %q (line %d, field %q), want line %d, field %q, message containing %q", err, e.Line, e.Path, tt.line, tt.field, tt.msg)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", "domain: b\n")
	write("a.yml", "domain: a\n")
	write("notes.txt", "not yaml")
	write(".hidden.yaml", "domain: hidden\n")
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("..data/c.yaml", "domain: a\n") // a ConfigMap's real files: not read twice
	d, err := rlconfig.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(d) != 2 || d[0].Name != "a" || d[1].Name != "b" {
		t.Errorf("got %+v, want domains a and b in file order", d)
	}

	write("c.yaml", "# same domain as a.yml\n\ndomain: a\n")
	_, err = rlconfig.Load(dir)
	var e *fielderr.Error
	if !errors.As(err, &e) || e.File != filepath.Join(dir, "c.yaml") || e.Line != 3 || !strings.Contains(e.Msg(), `duplicate domain "a"`) || !strings.Contains(e.Msg(), "a.yml") {
		t.Errorf("duplicate domain: got %v, want an error at c.yaml:3 naming a.yml", err)
	}

	if _, err := rlconfig.Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing path loaded")
	}
}
