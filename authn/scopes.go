package authn

import "strings"

// SplitScopes splits a scope (or role) string on U+0020 only, the one separator RFC 6749 §3.3
// allows, dropping empty values. Any other character, including other Unicode spaces
// (U+00A0, U+2003, U+3000…), tabs, newlines and control characters, stays part of its value,
// so "read\u00a0admin" is one scope that matches nothing, never "read" and "admin". The
// result is empty and non-nil for a string with no value. JWT claims and OAuth2 introspection
// answers are both split with it.
func SplitScopes(s string) []string {
	out := make([]string, 0, strings.Count(s, " ")+1)
	for s != "" {
		var v string
		v, s, _ = strings.Cut(s, " ")
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
