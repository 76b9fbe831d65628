package rlconfig_test

// The config cases of envoyproxy/ratelimit's own tests, restated (not copied) as table tests:
// each case cites the peer's file and line (github.com/envoyproxy/ratelimit at f2fb157). The
// peer's files are restated inline, trimmed to what the cases read.

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
	"github.com/wardenhq/warden/limiter/rlconfig"

	"github.com/wardenhq/warden/fielderr"
)

// peerBasic restates test/config/basic_config.yaml.
const peerBasic = `# Basic configuration for testing.
domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 20}
  - key: key2
    value: value2
    rate_limit: {unit: minute, requests_per_unit: 30}
  - key: key2
    value: value3
  - key: key3
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: key4
    rate_limit: {name: key4_rate_limit, unit: day, requests_per_unit: 1}
  - key: key5
    value: value5
    rate_limit: {unit: day, requests_per_unit: 15}
    descriptors:
      - key: subkey5
        value: subvalue5
        rate_limit: {unit: day, requests_per_unit: 25}
  - key: key6
    rate_limit:
      unlimited: true
  - key: key7
    detailed_metric: true
    rate_limit: {unit: minute, requests_per_unit: 70}
`

// peerShadow restates test/config/shadowmode_config.yaml.
const peerShadow = `domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
        shadow_mode: true
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 20}
    shadow_mode: true
  - key: key2
    value: value2
    rate_limit: {unit: minute, requests_per_unit: 30}
`

// peerWildcard restates test/config/wildcard.yaml.
const peerWildcard = `domain: test-domain
descriptors:
  - {key: wild, value: foo*, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: noWild, value: foo, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: noVal, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: midWild, value: bar*b, rate_limit: {unit: minute, requests_per_unit: 20}}
  - {key: multiWild, value: foo*bar*baz, rate_limit: {unit: minute, requests_per_unit: 10}}
  - key: nestedWild
    value: val1
    descriptors:
      - {key: wild, value: goo*, rate_limit: {unit: minute, requests_per_unit: 20}}
`

// peerShare restates test/config/share_threshold.yaml.
const peerShare = `domain: test-domain
descriptors:
  - {key: files, value: files/*, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 100}}
  - key: nested
    value: parent
    descriptors:
      - {key: files, value: nested/*, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 200}}
  - key: files
    value: top/*
    share_threshold: true
    descriptors:
      - {key: files, value: nested/*, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 300}}
  - key: route
    value: api/*
    share_threshold: true
    value_to_metric: true
    descriptors:
      - {key: method, rate_limit: {unit: minute, requests_per_unit: 60}}
  - key: service
    value: svc/*
    share_threshold: true
    descriptors:
      - {key: endpoint, detailed_metric: true, rate_limit: {unit: minute, requests_per_unit: 80}}
  - key: path
    value: path/*
    share_threshold: true
    descriptors:
      - key: file
        value: file/*
        share_threshold: false
        descriptors:
          - {key: type, rate_limit: {unit: minute, requests_per_unit: 120}}
  - key: user
    value: user/*
    share_threshold: true
    descriptors:
      - key: resource
        value: res/*
        share_threshold: true
        descriptors:
          - {key: action, rate_limit: {unit: minute, requests_per_unit: 150}}
  - {key: file, value: test1, rate_limit: {unit: minute, requests_per_unit: 50}}
  - {key: file, value: test*, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 100}}
  - {key: midpath, value: /api*v1, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 100}}
  - {key: multiroute, value: svc*ep*rpc, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 50}}
  - {key: midroute, value: /api*v2, share_threshold: true, value_to_metric: true, rate_limit: {unit: minute, requests_per_unit: 80}}
  - key: tenant
    value: t*prod
    share_threshold: true
    descriptors:
      - {key: resource, value: res*v2, share_threshold: true, rate_limit: {unit: minute, requests_per_unit: 60}}
`

// peerMetadata restates test/config/metadata.yaml.
const peerMetadata = `domain: test-domain
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: second, requests_per_unit: 5}
        metadata:
          name: service_1
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: second, requests_per_unit: 10}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 20}
    metadata:
      service_with_quota:
        name: service_2
`

func mustParse(t *testing.T, name, yaml string) []limiter.Domain {
	t.Helper()
	d, err := rlconfig.Parse(name, []byte(yaml))
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	return []limiter.Domain{d}
}

// want is the limit the peer's GetLimit returns for a descriptor: nil (none), unlimited, or
// requests per period, with its name ("" when the config names none) and shadow mode.
type want struct {
	none      bool
	unlimited bool
	rpu       int64
	period    time.Duration
	name      string
	shadow    bool
}

type lookupCase struct {
	peer    string // the peer's file:line of the assertion
	entries []limiter.Entry
	want    want
}

func checkLookups(t *testing.T, domains []limiter.Domain, cases []lookupCase) {
	t.Helper()
	l := newLimiter(t, domains)
	for _, c := range cases {
		t.Run(c.peer, func(t *testing.T) {
			st, err := l.Peek(context.Background(), "test-domain", "", c.entries)
			if c.want.none {
				if !errors.Is(err, limiter.ErrNoLimit) {
					t.Fatalf("%v: got %+v, %v; want no limit", c.entries, st, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v: %v", c.entries, err)
			}
			name := ""
			if st.Named {
				name = st.Name
			}
			got := want{unlimited: st.Unlimited, shadow: st.Shadow, name: name}
			if !st.Unlimited {
				got.rpu, got.period = st.Limit.Limit, st.Limit.Period
			}
			if got != c.want {
				t.Errorf("%v: got %+v, want %+v", c.entries, got, c.want)
			}
		})
	}
}

var (
	sec  = time.Second
	mins = time.Minute
)

func TestPeerBasicConfig(t *testing.T) {
	const f = "test/config/config_test.go:"
	checkLookups(t, mustParse(t, "basic_config.yaml", peerBasic), []lookupCase{
		{f + "45", entries("key1", "something"), want{none: true}},
		{f + "52", entries("key1", "value1"), want{none: true}},
		{f + "59", entries("key2", "value2", "subkey", "subvalue"), want{none: true}},
		{f + "66", entries("key5", "value5", "subkey5", "subvalue"), want{none: true}},
		{f + "73", entries("key1", "value1", "subkey1", "something"), want{rpu: 5, period: sec}},
		{f + "89", entries("key1", "value1", "subkey1", "subvalue1"), want{rpu: 10, period: sec}},
		{f + "109", entries("key2", "something"), want{rpu: 20, period: mins}},
		{f + "125", entries("key2", "value2"), want{rpu: 30, period: mins}},
		{f + "141", entries("key2", "value3"), want{none: true}},
		{f + "148", entries("key3", "foo"), want{rpu: 1, period: time.Hour}},
		{f + "165", entries("key4", "foo"), want{rpu: 1, period: 24 * time.Hour, name: "key4_rate_limit"}},
		{f + "182", entries("key6", "foo"), want{unlimited: true}},
		{f + "195", entries("key7", "unspecified_value"), want{rpu: 70, period: mins}},
		{f + "213", entries("key7", "another_value"), want{rpu: 70, period: mins}},
	})
	t.Run(f+"37 unknown domain", func(t *testing.T) {
		l := newLimiter(t, mustParse(t, "basic_config.yaml", peerBasic))
		if _, err := l.Peek(context.Background(), "foo_domain", "", entries("key1", "value1")); !errors.Is(err, limiter.ErrNoLimit) {
			t.Errorf("got %v, want no limit", err)
		}
	})
}

func TestPeerShadowModeConfig(t *testing.T) {
	const f = "test/config/config_test.go:"
	checkLookups(t, mustParse(t, "shadowmode_config.yaml", peerShadow), []lookupCase{
		{f + "510", entries("key1", "value1", "subkey1", "something"), want{rpu: 5, period: sec}},
		{f + "527", entries("key1", "value1", "subkey1", "subvalue1"), want{rpu: 10, period: sec, shadow: true}},
		{f + "545", entries("key2", "something"), want{rpu: 20, period: mins, shadow: true}},
		{f + "562", entries("key2", "value2"), want{rpu: 30, period: mins}},
	})
}

func TestPeerWildcardConfig(t *testing.T) {
	const f = "test/config/config_test.go:"
	twenty := want{rpu: 20, period: mins}
	checkLookups(t, mustParse(t, "wildcard.yaml", peerWildcard), []lookupCase{
		{f + "586", entries("noVal", "foo1"), twenty},
		{f + "591", entries("noVal", "foo2"), twenty},
		{f + "604", entries("wild", "foo1"), twenty},
		{f + "609", entries("wild", "foo2"), twenty},
		{f + "614", entries("nestedWild", "val1", "wild", "goo2"), twenty},
		{f + "629", entries("wild", "bar"), want{none: true}},
		{f + "637", entries("noWild", "foo1"), want{none: true}},
		{f + "645", entries("midWild", "barab"), twenty},
		{f + "650", entries("midWild", "bar123b"), twenty},
		{f + "662", entries("midWild", "barb"), twenty},
		{f + "670", entries("midWild", "bara"), want{none: true}},
		{f + "675", entries("midWild", "xbarb"), want{none: true}},
		{f + "684", entries("multiWild", "foo123bar456baz"), want{rpu: 10, period: mins}},
		{f + "689", entries("multiWild", "foobarbaz"), want{rpu: 10, period: mins}},
		{f + "701", entries("multiWild", "foo123baz"), want{none: true}},
		{f + "706", entries("multiWild", "bar456baz"), want{none: true}},
	})
}

func TestPeerMetadata(t *testing.T) {
	const f = "test/config/config_test.go:"
	d := mustParse(t, "metadata.yaml", peerMetadata)
	checkLookups(t, d, []lookupCase{
		{f + "2221", entries("key1", "value1", "subkey1", "something"), want{rpu: 5, period: sec}},
		{f + "2243", entries("key2", "something"), want{rpu: 20, period: mins}},
	})
	// test/config/config_test.go:2235 and :2256: the metadata is kept with its limit.
	if diff := cmp.Diff(map[string]any{"name": "service_1"}, d[0].Descriptors[0].Descriptors[0].Metadata); diff != "" {
		t.Errorf("key1_value1.subkey1 metadata (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"service_with_quota": map[string]any{"name": "service_2"}}, d[0].Descriptors[1].Metadata); diff != "" {
		t.Errorf("key2 metadata (-want +got):\n%s", diff)
	}
}

// TestPeerShareThreshold checks which limit applies and which values share one counter: a
// value matched by a share_threshold wildcard counts in the pattern's counter, so spending
// one unit with the first value leaves one unit less for the second.
func TestPeerShareThreshold(t *testing.T) {
	const f = "test/config/config_test.go:"
	domains := mustParse(t, "share_threshold.yaml", peerShare)
	tests := []struct {
		peer   string
		a, b   []limiter.Entry
		rpu    int64
		shared bool
	}{
		{f + "1683", entries("files", "files/a.pdf"), entries("files", "files/b.csv"), 100, true},
		{f + "1710", entries("route", "api/v1", "method", "GET"), entries("route", "api/v2", "method", "GET"), 60, true},
		{f + "1726", entries("service", "svc/user", "endpoint", "get"), entries("service", "svc/order", "endpoint", "get"), 80, true},
		{f + "1745", entries("nested", "parent", "files", "nested/file1.txt"), entries("nested", "parent", "files", "nested/file2.txt"), 200, true},
		{f + "1760", entries("files", "top/file1.txt", "files", "nested/file1.txt"), entries("files", "top/x", "files", "nested/y"), 300, true},
		// path/* shares, file/* does not (share_threshold: false): different file values count apart.
		{f + "1776", entries("path", "path/foo", "file", "file/doc1", "type", "pdf"), entries("path", "path/bar", "file", "file/doc2", "type", "pdf"), 120, false},
		{f + "1794", entries("user", "user/alice", "resource", "res/file1", "action", "read"), entries("user", "user/bob", "resource", "res/file2", "action", "read"), 150, true},
		{f + "1827", entries("file", "test2"), entries("file", "testing"), 100, true},
		{f + "1879", entries("midpath", "/api/v1"), entries("midpath", "/api-beta-v1"), 100, true},
		{f + "1911", entries("multiroute", "svcAepBrpc"), entries("multiroute", "svc-ep-rpc"), 50, true},
		{f + "1939", entries("midroute", "/api/v2"), entries("midroute", "/api-beta-v2"), 80, true},
		{f + "1959", entries("tenant", "t1prod", "resource", "resAv2"), entries("tenant", "t99prod", "resource", "resBBBv2"), 60, true},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			l := newLimiter(t, domains)
			var res limiter.Result
			if err := l.Check(context.Background(), limiter.Request{Domain: "test-domain", Cost: 1, Descriptors: []limiter.RequestDescriptor{{Entries: tt.a}}}, &res); err != nil {
				t.Fatal(err)
			}
			st, err := l.Peek(context.Background(), "test-domain", "", tt.b)
			if err != nil {
				t.Fatal(err)
			}
			wantRemaining := tt.rpu
			if tt.shared {
				wantRemaining--
			}
			if st.Limit.Limit != tt.rpu || st.Remaining != wantRemaining {
				t.Errorf("after one unit on %v, %v: got limit %d remaining %d, want %d remaining %d", tt.a, tt.b, st.Limit.Limit, st.Remaining, tt.rpu, wantRemaining)
			}
		})
	}
	checkLookups(t, domains, []lookupCase{
		{f + "1816", entries("file", "test1"), want{rpu: 50, period: mins}},
		{f + "1897", entries("midpath", "/api/v2"), want{none: true}},
		{f + "1929", entries("multiroute", "svcABCrpc"), want{none: true}},
	})
}

// TestPeerConfigVerdicts restates the peer's load errors: Warden refuses each file, naming
// the line, with the peer's message.
func TestPeerConfigVerdicts(t *testing.T) {
	const f = "test/config/config_test.go:"
	tests := []struct {
		peer, file, yaml string
		line             int
		msg              string
	}{
		{f + "347", "empty_domain.yaml", "descriptors:\n", 1, "config file cannot have empty domain"},
		{f + "368", "empty_key.yaml", "domain: test-domain\ndescriptors:\n  - value: value1\n", 3, "descriptor has empty key"},
		{f + "379", "duplicate_key.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n\n  - key: key1\n    value: value1\n", 6, "duplicate descriptor"},
		{f + "403", "bad_limit_unit.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    rate_limit:\n      unit: foo\n      requests_per_unit: 5\n", 6, `invalid rate limit unit "foo"`},
		{f + "414", "replaces_self.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    descriptors:\n      - key: subkey1\n        rate_limit:\n          name: self\n          replaces:\n            - name: self\n          unit: second\n          requests_per_unit: 5\n", 10, "replaces should not contain name of same descriptor"},
		{f + "425", "replaces_empty.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    descriptors:\n      - key: subkey1\n        rate_limit:\n          name: self\n          replaces:\n            - name:\n          unit: second\n          requests_per_unit: 5\n", 10, "should not have an empty replaces entry"},
		{f + "436", "bad_yaml.yaml", "'''\n", 2, "found unexpected end of stream"},
		{f + "447", "misspelled_key.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    ratelimit:\n      unit: day\n      requests_per_unit: 5\n", 5, `unknown key "ratelimit"`},
		{f + "457", "misspelled_key2.yaml", "domain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    rate_limit:\n      unit: day\n      requestsperunit: 5\n", 7, `unknown key "requestsperunit"`},
		{f + "467", "non_string_key.yaml", "0.25: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n", 1, `unknown key "0.25"`},
		{f + "478", "non_map_list.yaml", "domain: test-domain\ndescriptors:\n  - a\n  - b\n  - c\n", 3, "must be a mapping"},
		{f + "489", "unlimited_with_unit.yaml", "domain: test-domain\ndescriptors:\n  - key: foo\n    rate_limit:\n      unlimited: true\n      unit: day\n      requests_per_unit: 25\n", 6, "should not specify rate limit unit when unlimited"},
		// share_threshold needs a wildcard.
		{"src/config/config_impl.go:312", "share.yaml", "domain: d\ndescriptors:\n  - key: k\n    value: v\n    share_threshold: true\n", 5, "share_threshold can only be used with wildcard values"},
		// metadata must convert to a Struct (parseMetadata).
		{"src/config/config_impl.go:335", "meta.yaml", "domain: d\ndescriptors:\n  - key: k\n    metadata: [a, b]\n", 4, "error parsing metadata"},
	}
	for _, tt := range tests {
		t.Run(tt.peer, func(t *testing.T) {
			_, err := rlconfig.Parse(tt.file, []byte(tt.yaml))
			var e *fielderr.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want an *fielderr.Error", err)
			}
			if e.File != tt.file || e.Line != tt.line || !strings.Contains(e.Msg(), tt.msg) {
				t.Errorf("got %q (line %d), want %s:%d and a message containing %q", err, e.Line, tt.file, tt.line, tt.msg)
			}
		})
	}
}

// TestPeerDomains covers the peer's cases over several files: a duplicate domain
// (test/config/config_test.go:357), and with MERGE_DOMAIN_CONFIG its merge (:227) and a
// descriptor defined in both files (:390).
func TestPeerDomains(t *testing.T) {
	const key1 = "# Basic configuration which will be merged\ndomain: test-domain\ndescriptors:\n  - key: key1\n    value: value1\n    rate_limit: {unit: minute, requests_per_unit: 10}\n"
	const key2 = "domain: test-domain\ndescriptors:\n  - key: key2\n    value: value2\n    rate_limit: {unit: minute, requests_per_unit: 20}\n"
	dir := func(files map[string]string) string {
		d := t.TempDir()
		for name, s := range files {
			if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	t.Run("test/config/config_test.go:357", func(t *testing.T) {
		_, err := rlconfig.Load(dir(map[string]string{"basic_config.yaml": peerBasic, "duplicate_domain.yaml": "domain: test-domain\ndescriptors:\n"}))
		var e *fielderr.Error
		if !errors.As(err, &e) || filepath.Base(e.File) != "duplicate_domain.yaml" || e.Line != 1 || !strings.Contains(e.Msg(), `duplicate domain "test-domain"`) {
			t.Errorf("got %v, want duplicate_domain.yaml:1: duplicate domain", err)
		}
	})
	t.Run("test/config/config_test.go:227", func(t *testing.T) {
		d, err := rlconfig.LoadOptions(dir(map[string]string{"merge_domain_key1.yaml": key1, "merge_domain_key2.yaml": key2}), rlconfig.Options{MergeDomains: true})
		if err != nil {
			t.Fatal(err)
		}
		checkLookups(t, d, []lookupCase{
			{"test/config/config_test.go:242", entries("key1", "value1"), want{rpu: 10, period: mins}},
			{"test/config/config_test.go:250", entries("key2", "value2"), want{rpu: 20, period: mins}},
		})
	})
	t.Run("test/config/config_test.go:390", func(t *testing.T) {
		_, err := rlconfig.LoadOptions(dir(map[string]string{"a.yaml": key1, "b.yaml": key1}), rlconfig.Options{MergeDomains: true})
		var e *fielderr.Error
		if !errors.As(err, &e) || filepath.Base(e.File) != "b.yaml" || e.Line != 4 || !strings.Contains(e.Msg(), "duplicate descriptor composite key 'test-domain.key1_value1'") {
			t.Errorf("got %v, want b.yaml:4: duplicate descriptor composite key", err)
		}
	})
}

// peerExample restates examples/ratelimit/config/example.yaml: its keys, nesting and
// document marker as the peer ships them.
const peerExample = `---
domain: rl
descriptors:
  - key: category
    value: account
    rate_limit:
      replaces:
        - name: bkthomps
        - name: fake_name
      unit: minute
      requests_per_unit: 4
  - key: source_cluster
    value: proxy
    descriptors:
      - key: destination_cluster
        value: bkthomps
        rate_limit:
          replaces:
            - name: bkthomps
          unit: minute
          requests_per_unit: 2
      - key: destination_cluster
        value: mock
        rate_limit:
          unit: minute
          requests_per_unit: 1
      - key: destination_cluster
        value: override
        rate_limit:
          replaces:
            - name: banned_limit
          unit: minute
          requests_per_unit: 2
      - key: destination_cluster
        value: fake
        rate_limit:
          name: fake_name
          unit: minute
          requests_per_unit: 2
  - key: foo
    rate_limit:
      unit: minute
      requests_per_unit: 2
    descriptors:
      - key: bar
        rate_limit:
          unit: minute
          requests_per_unit: 3
      - key: bar
        value: bkthomps
        rate_limit:
          name: bkthomps
          unit: minute
          requests_per_unit: 1
      - key: bar
        value: banned
        rate_limit:
          name: banned_limit
          unit: minute
          requests_per_unit: 0
      - key: baz
        rate_limit:
          unit: second
          requests_per_unit: 1
      - key: baz
        value: not-so-shady
        rate_limit:
          unit: minute
          requests_per_unit: 3
      - key: baz
        value: shady
        rate_limit:
          unit: minute
          requests_per_unit: 3
        shadow_mode: true
      - key: bay
        rate_limit:
          unlimited: true
  - key: unspec
    detailed_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: qux
    rate_limit:
      unlimited: true
  - key: service
    value: service_1
    quota_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
    metadata:
      service_with_quota:
        name: "service_1"
  - key: service
    value: service_2
    quota_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
    metadata:
      service_with_quota:
        name: "service_2"
`

// peerExampleMongo restates examples/ratelimit/config/config.yaml.
const peerExampleMongo = `domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500

  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
`

// TestPeerExamples loads the peer's examples/ratelimit/config/ directory, unchanged, and
// checks the behaviours its integration scripts expect of it.
func TestPeerExamples(t *testing.T) {
	dir := t.TempDir()
	for name, s := range map[string]string{"example.yaml": peerExample, "config.yaml": peerExampleMongo} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	domains, err := rlconfig.Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(domains) != 2 || domains[0].Name != "mongo_cps" || domains[1].Name != "rl" {
		t.Fatalf("got %d domains, want mongo_cps and rl", len(domains))
	}
	run := func(l *limiter.Limiter, descs ...[]limiter.Entry) limiter.Result {
		t.Helper()
		req := limiter.Request{Domain: "rl", Cost: 1}
		for _, d := range descs {
			req.Descriptors = append(req.Descriptors, limiter.RequestDescriptor{Entries: d})
		}
		var res limiter.Result
		if err := l.Check(context.Background(), req, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	banned := entries("foo", "x", "bar", "banned")
	override := entries("source_cluster", "proxy", "destination_cluster", "override")

	// example.yaml:56-59: requests_per_unit 0 refuses every request.
	t.Run("examples/ratelimit/config/example.yaml:56 ban", func(t *testing.T) {
		l := newLimiter(t, domains)
		if res := run(l, banned); res.Allowed || res.Statuses[0].Code != limiter.CodeOverLimit {
			t.Errorf("banned: got %+v, want over the limit", res)
		}
	})
	// example.yaml:28-32: the override limit replaces banned_limit, so a request carrying
	// both descriptors gets the override's 2 per minute instead of the ban.
	t.Run("examples/ratelimit/config/example.yaml:28 replaces a ban", func(t *testing.T) {
		l := newLimiter(t, domains)
		for i := range 3 {
			res := run(l, banned, override)
			if want := i < 2; res.Allowed != want || res.Statuses[0].Applied {
				t.Errorf("request %d: got allowed=%v (banned applied=%v), want %v and the ban replaced", i+1, res.Allowed, res.Statuses[0].Applied, want)
			}
		}
	})
	// example.yaml:87-104 with integration-test/scripts/quota.sh:8-21: two quota-mode
	// limits (1 and 2 per minute); the request is refused only once both are over.
	t.Run("integration-test/scripts/quota.sh:8 quota mode", func(t *testing.T) {
		l := newLimiter(t, domains)
		s1, s2 := entries("service", "service_1"), entries("service", "service_2")
		for i, want := range []bool{true, true, false} {
			res := run(l, s1, s2)
			if res.Allowed != want {
				t.Errorf("request %d: got allowed=%v (statuses %+v), want %v", i+1, res.Allowed, res.Statuses, want)
			}
		}
		// A limit not in quota mode still refuses on its own, beside a quota with room
		// (src/service/ratelimit.go:253).
		if res := run(newLimiter(t, domains), s1, banned); res.Allowed || res.Statuses[0].Code != limiter.CodeOK {
			t.Errorf("a ban beside a quota with room: got %+v, want refused by the ban alone", res)
		}
	})
}
