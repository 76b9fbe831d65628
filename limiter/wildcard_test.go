package limiter

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// wildcardRef is the meaning of a pattern: each "*" any run of characters, the rest literal.
func wildcardRef(pattern, value string) bool {
	parts := strings.Split(pattern, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^(?s:" + strings.Join(parts, ".*") + ")$").MatchString(value)
}

// TestWildcardMatch restates the matches of envoyproxy/ratelimit's test/config/config_test.go
// (TestWildcardConfig, :645-709) and a few edges.
func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"foo*", "foo1", true}, {"foo*", "foo", true}, {"foo*", "bar", false},
		{"bar*b", "barab", true}, {"bar*b", "bar123b", true}, {"bar*b", "barb", true},
		{"bar*b", "bara", false}, {"bar*b", "xbarb", false},
		{"foo*bar*baz", "foo123bar456baz", true}, {"foo*bar*baz", "foobarbaz", true},
		{"foo*bar*baz", "foo123baz", false}, {"foo*bar*baz", "bar456baz", false},
		{"/api/*/action", "/api/v1/action", true}, {"/api/*/action", "/api/action", false},
		{"ab*ba", "aba", false}, {"*", "", true}, {"a**b", "ab", true}, {"*x*", "yxy", true},
	}
	for _, tt := range tests {
		got := wildcardMatch(strings.Split(tt.pattern, "*"), tt.value)
		if got != tt.want || got != wildcardRef(tt.pattern, tt.value) {
			t.Errorf("%q matches %q: got %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}

// FuzzWildcardMatch checks wildcardMatch against the regular-expression meaning of a pattern.
func FuzzWildcardMatch(f *testing.F) {
	f.Add("foo*bar*baz", "foo123bar456baz")
	f.Add("ab*ba", "aba")
	f.Add("*a*", "bab")
	f.Fuzz(func(t *testing.T, pattern, value string) {
		if !strings.Contains(pattern, "*") || !utf8.ValidString(pattern) || !utf8.ValidString(value) {
			return // the reference's regular expressions need UTF-8
		}
		if got, want := wildcardMatch(strings.Split(pattern, "*"), value), wildcardRef(pattern, value); got != want {
			t.Fatalf("%q matches %q: got %v, want %v", pattern, value, got, want)
		}
	})
}
