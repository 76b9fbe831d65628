package authn

import (
	"strings"
	"testing"
)

// refBase62Value and refToken68 are the per-byte definitions the lookup tables encode.
func refBase62Value(c byte) int { return strings.IndexByte(base62Alphabet, c) }

func refToken68(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

// refParseAPIKey checks a key byte by byte as the format says (see ParseAPIKey).
func refParseAPIKey(key string) bool {
	if len(key) != APIKeyLen || (key[:apiKeyPrefixLen] != livePrefix && key[:apiKeyPrefixLen] != testPrefix) || key[apiKeySepPos] != '_' {
		return false
	}
	var sum uint64
	for i := apiKeyPrefixLen; i < APIKeyLen; i++ {
		if i == apiKeySepPos {
			continue
		}
		v := refBase62Value(key[i])
		if v < 0 {
			return false
		}
		if i >= apiKeySumPos {
			sum = sum*62 + uint64(v)
		}
	}
	return sum == uint64(apiKeyChecksum(key[:apiKeyBodyLen]))
}

// TestLookupTables: the tables give what the per-byte definitions give, for every byte.
func TestLookupTables(t *testing.T) {
	for c := 0; c < 256; c++ {
		if got, want := base62Value(byte(c)), refBase62Value(byte(c)); got != want {
			t.Errorf("base62Value(%q) = %d, want %d", byte(c), got, want)
		}
		s := string([]byte{byte(c)})
		if got, want := validToken68(s, 10), refToken68(s, 10); got != want {
			t.Errorf("validToken68(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzParseAPIKeyAsReference: ParseAPIKey accepts exactly the keys the byte-by-byte
// definition accepts.
func FuzzParseAPIKeyAsReference(f *testing.F) {
	f.Add(formatAPIKey(livePrefix, testID, testSecret))
	f.Add(formatAPIKey(testPrefix, testID, testSecret))
	f.Add("sk-live-" + strings.Repeat("\xff", 41))
	f.Fuzz(func(t *testing.T, key string) {
		_, err := ParseAPIKey(key)
		if got, want := err == nil, refParseAPIKey(key); got != want {
			t.Fatalf("ParseAPIKey(%q): valid %v, want %v", key, got, want)
		}
	})
}

// FuzzValidToken68: validToken68 is the RFC 7235 token68 definition.
func FuzzValidToken68(f *testing.F) {
	for _, s := range []string{"abc", "a.b_c~d+e/f==", "==", "a=b", "", "a b", "é"} {
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if got, want := validToken68(s, max), refToken68(s, max); got != want {
			t.Fatalf("validToken68(%q, %d) = %v, want %v", s, max, got, want)
		}
	})
}
