package authn

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testJWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"

func TestClassifyToken(t *testing.T) {
	key := formatAPIKey(livePrefix, testID, testSecret)
	tests := []struct {
		tok  string
		want TokenKind
	}{
		{"", TokenNone},
		{key, TokenAPIKey},
		{"sk-test-garbage", TokenAPIKey},
		{testJWT, TokenJWT},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", TokenJWT},
		{"a.b", TokenOpaque},
		{"a.b.c.d", TokenOpaque},
		{".b.c", TokenOpaque},
		{"a..c", TokenOpaque},
		{"a.b+.c", TokenOpaque},
		{"2YotnFZFEjr1zCsicMWpAA", TokenOpaque},
	}
	for _, tt := range tests {
		if got := ClassifyToken(tt.tok); got != tt.want {
			t.Errorf("ClassifyToken(%q) = %v, want %v", tt.tok, got, tt.want)
		}
	}
}

func TestExtract(t *testing.T) {
	key := formatAPIKey(livePrefix, testID, testSecret)
	other := formatAPIKey(testPrefix, testID, testSecret)
	h := headers
	tests := []struct {
		name       string
		cfg        ExtractConfig
		headers    map[string][]string
		want       Extracted
		wantReason Reason
	}{
		{"none", ExtractConfig{}, h("accept", "*/*"), Extracted{}, NoCredentials},
		{"nil", ExtractConfig{}, nil, Extracted{}, NoCredentials},
		{"bearer jwt", ExtractConfig{}, h("authorization", "Bearer "+testJWT), Extracted{TokenJWT, testJWT}, OK},
		{"bearer case-insensitive", ExtractConfig{}, h("authorization", "bEaReR "+testJWT), Extracted{TokenJWT, testJWT}, OK},
		{"bearer api key", ExtractConfig{}, h("authorization", "Bearer "+key), Extracted{TokenAPIKey, key}, OK},
		{"bearer opaque", ExtractConfig{}, h("authorization", "Bearer abc123=="), Extracted{TokenOpaque, "abc123=="}, OK},
		{"apikey scheme", ExtractConfig{}, h("authorization", "ApiKey "+key), Extracted{TokenAPIKey, key}, OK},
		{"x-api-key", ExtractConfig{}, h("x-api-key", key), Extracted{TokenAPIKey, key}, OK},
		{"custom header", ExtractConfig{APIKeyHeader: "x-warden-key"}, h("x-warden-key", key), Extracted{TokenAPIKey, key}, OK},
		{"default header ignored when custom", ExtractConfig{APIKeyHeader: "x-warden-key"}, h("x-api-key", key), Extracted{}, NoCredentials},
		{"same key twice", ExtractConfig{}, h("authorization", "Bearer "+key, "x-api-key", key), Extracted{TokenAPIKey, key}, OK},
		{"different keys", ExtractConfig{}, h("authorization", "Bearer "+key, "x-api-key", other), Extracted{}, Malformed},
		{"jwt and api key", ExtractConfig{}, h("authorization", "Bearer "+testJWT, "x-api-key", key), Extracted{}, Malformed},
		{"two authorization", ExtractConfig{}, h("authorization", "Bearer a", "authorization", "Bearer a"), Extracted{}, Malformed},
		{"two x-api-key", ExtractConfig{}, h("x-api-key", key, "x-api-key", key), Extracted{}, Malformed},
		{"basic", ExtractConfig{}, h("authorization", "Basic dXNlcjpwdw=="), Extracted{}, Malformed},
		{"no credential", ExtractConfig{}, h("authorization", "Bearer"), Extracted{}, Malformed},
		{"empty credential", ExtractConfig{}, h("authorization", "Bearer "), Extracted{}, Malformed},
		{"two spaces", ExtractConfig{}, h("authorization", "Bearer  abc"), Extracted{}, Malformed},
		{"trailing space", ExtractConfig{}, h("authorization", "Bearer abc "), Extracted{}, Malformed},
		{"comma-joined", ExtractConfig{}, h("authorization", "Bearer a, Bearer b"), Extracted{}, Malformed},
		{"empty x-api-key", ExtractConfig{}, h("x-api-key", ""), Extracted{}, Malformed},
		{"too long", ExtractConfig{MaxCredentialBytes: 10}, h("authorization", "Bearer "+strings.Repeat("a", 11)), Extracted{}, Malformed},
		{"= inside", ExtractConfig{}, h("authorization", "Bearer ab=c"), Extracted{}, Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, r := tt.cfg.Extract(tt.headers)
			if r != tt.wantReason {
				t.Errorf("reason = %v, want %v", r, tt.wantReason)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Extract (-got +want):\n%s", diff)
			}
		})
	}
}

// headers builds a header map from name, value pairs; a repeated name gets several values.
func headers(kv ...string) map[string][]string {
	m := map[string][]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = append(m[kv[i]], kv[i+1])
	}
	return m
}

func FuzzExtract(f *testing.F) {
	key := formatAPIKey(livePrefix, testID, testSecret)
	f.Add("Bearer "+testJWT, "")
	f.Add("ApiKey "+key, key)
	f.Add("", key)
	f.Add("Basic x", "")
	f.Fuzz(func(t *testing.T, auth, apiKey string) {
		h := map[string][]string{}
		if auth != "" {
			h["authorization"] = []string{auth}
		}
		if apiKey != "" {
			h["x-api-key"] = []string{apiKey}
		}
		got, r := ExtractConfig{}.Extract(h)
		switch r {
		case OK:
			if got.Kind == TokenNone || !validToken68(got.Value, 8192) {
				t.Fatalf("Extract = %+v, OK with an invalid credential", got)
			}
			if !strings.HasSuffix(auth, " "+got.Value) && got.Value != apiKey {
				t.Fatalf("Extract = %q, not taken from the headers %q, %q", got.Value, auth, apiKey)
			}
			if got.Kind != TokenAPIKey && apiKey != "" {
				t.Fatalf("Extract = %+v with an x-api-key present", got)
			}
		case NoCredentials:
			if len(h) != 0 {
				t.Fatalf("NoCredentials with headers %v", h)
			}
		case Malformed:
			if got != (Extracted{}) {
				t.Fatalf("Malformed with a credential %+v", got)
			}
		default:
			t.Fatalf("Extract reason = %v", r)
		}
	})
}

func BenchmarkExtract(b *testing.B) {
	h := map[string][]string{"authorization": {"Bearer " + testJWT}, "accept": {"*/*"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, r := (ExtractConfig{}).Extract(h); r != OK {
			b.Fatal(r)
		}
	}
}
