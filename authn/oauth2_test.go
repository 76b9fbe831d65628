package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/wardenhq/warden/internal/budget"
)

// introServer answers introspection requests from a table of tokens; status, if set,
// overrides every answer.
type introServer struct {
	*httptest.Server
	calls  atomic.Int64
	status atomic.Int64
}

func newIntroServer(t *testing.T, answers map[string]string) *introServer {
	t.Helper()
	s := &introServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		id, secret, ok := r.BasicAuth()
		if r.Method != http.MethodPost || !ok || id != "warden" || secret != "s3cret" ||
			r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" || r.URL.RawQuery != "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		ans, ok := answers[r.PostFormValue("token")]
		if !ok {
			ans = `{"active":false}`
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, ans)
	}))
	t.Cleanup(s.Close)
	return s
}

func newTestIntrospector(t *testing.T, url string, c *clock, mod func(*IntrospectionConfig)) *Introspector {
	t.Helper()
	cfg := IntrospectionConfig{Endpoint: url, ClientID: "warden", ClientSecret: "s3cret",
		Issuer: "https://idp.example", Audiences: []string{"warden"}, TenantClaim: "tenant",
		MaxCacheTTL: time.Minute, NegativeCacheTTL: 5 * time.Second, BreakerFailures: 2,
		BreakerCooldown: 10 * time.Second, Now: c.now, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	in, err := NewIntrospector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func TestIntrospectorVerify(t *testing.T) {
	exp := t0.Add(30 * time.Second).Unix()
	answers := map[string]string{
		"good":      fmt.Sprintf(`{"active":true,"sub":"alice","client_id":"app","scope":"orders:read orders:write","iss":"https://idp.example","aud":["x","warden"],"exp":%d,"tenant":"acme"}`, exp),
		"client":    fmt.Sprintf(`{"active":true,"client_id":"batch","iss":"https://idp.example","aud":"warden","exp":%d}`, exp),
		"expired":   fmt.Sprintf(`{"active":true,"sub":"a","iss":"https://idp.example","aud":"warden","exp":%d}`, t0.Unix()-1),
		"future":    fmt.Sprintf(`{"active":true,"sub":"a","iss":"https://idp.example","aud":"warden","nbf":%d}`, t0.Unix()+60),
		"issuer":    `{"active":true,"sub":"a","iss":"https://evil.example","aud":"warden"}`,
		"audience":  `{"active":true,"sub":"a","iss":"https://idp.example","aud":"other"}`,
		"anonymous": `{"active":true,"iss":"https://idp.example","aud":"warden"}`,
	}
	srv := newIntroServer(t, answers)
	c := &clock{t0}
	in := newTestIntrospector(t, srv.URL, c, nil)
	ctx := context.Background()

	tests := []struct {
		token string
		want  Reason
	}{
		{"good", OK}, {"client", OK}, {"inactive", Inactive}, {"expired", Expired},
		{"future", NotYetValid}, {"issuer", WrongIssuer}, {"audience", WrongAudience},
		{"anonymous", Malformed}, {"", NoCredentials}, {strings.Repeat("x", 5000), Malformed},
	}
	for _, tt := range tests {
		if _, r := in.Verify(ctx, tt.token); r != tt.want {
			t.Errorf("Verify(%.10q) = %v, want %v", tt.token, r, tt.want)
		}
	}
	p, _ := in.Verify(ctx, "good")
	want := Principal{Subject: "alice", Tenant: "acme", Scopes: []string{"orders:read", "orders:write"},
		Method: MethodOAuth2, CredentialID: p.CredentialID, ExpiresAt: time.Unix(exp, 0),
		Claims: map[string]string{"client_id": "app"}}
	if diff := cmp.Diff(p, want); diff != "" {
		t.Errorf("principal (-got +want):\n%s", diff)
	}
	if len(p.CredentialID) != 16 || strings.Contains(p.CredentialID, "good") {
		t.Errorf("CredentialID = %q, want a 16-hex digest prefix", p.CredentialID)
	}
	if p, _ := in.Verify(ctx, "client"); p.Subject != "batch" || len(p.Scopes) != 0 || p.Scopes == nil {
		t.Errorf("client token principal = %+v, want subject batch narrowed to no scope", p)
	}
}

func TestIntrospectorCaching(t *testing.T) {
	exp := t0.Add(30 * time.Second).Unix()
	srv := newIntroServer(t, map[string]string{
		"good":  fmt.Sprintf(`{"active":true,"sub":"alice","iss":"https://idp.example","aud":"warden","exp":%d}`, exp),
		"noexp": `{"active":true,"sub":"bob","iss":"https://idp.example","aud":"warden"}`,
	})
	c := &clock{t0}
	in := newTestIntrospector(t, srv.URL, c, nil)
	ctx := context.Background()
	steps := []struct {
		at        time.Duration
		token     string
		want      Reason
		wantCalls int64
	}{
		{0, "good", OK, 1},
		{10 * time.Second, "good", OK, 1},      // cached
		{29 * time.Second, "good", OK, 1},      // still cached: exp is at 30s
		{30 * time.Second, "good", Expired, 2}, // never cached past exp
		{30 * time.Second, "noexp", OK, 3},     //
		{89 * time.Second, "noexp", OK, 3},     // cached up to MaxCacheTTL (1m)
		{90 * time.Second, "noexp", OK, 4},     // asked again after MaxCacheTTL
		{90 * time.Second, "unknown", Inactive, 5},
		{94 * time.Second, "unknown", Inactive, 5}, // negative cache, 5s
		{95 * time.Second, "unknown", Inactive, 6},
	}
	for _, s := range steps {
		c.t = t0.Add(s.at)
		if _, r := in.Verify(ctx, s.token); r != s.want {
			t.Errorf("at %v Verify(%s) = %v, want %v", s.at, s.token, r, s.want)
		}
		if got := srv.calls.Load(); got != s.wantCalls {
			t.Errorf("at %v Verify(%s): endpoint calls = %d, want %d", s.at, s.token, got, s.wantCalls)
		}
	}
}

func TestIntrospectorBreaker(t *testing.T) {
	srv := newIntroServer(t, map[string]string{"good": `{"active":true,"sub":"alice","iss":"https://idp.example","aud":"warden"}`})
	c := &clock{t0}
	in := newTestIntrospector(t, srv.URL, c, nil)
	ctx := context.Background()
	srv.status.Store(http.StatusInternalServerError)
	steps := []struct {
		at        time.Duration
		want      Reason
		wantCalls int64
	}{
		{0, Unavailable, 1},
		{0, Unavailable, 2},                // second failure opens the breaker
		{time.Second, Unavailable, 2},      // open: no call
		{10 * time.Second, Unavailable, 3}, // half-open probe fails: open again
		{15 * time.Second, Unavailable, 3}, //
		{20 * time.Second, OK, 4},          // probe succeeds (server healed below)
		{20 * time.Second, OK, 4},          // and is cached
	}
	for i, s := range steps {
		if i == 5 {
			srv.status.Store(0)
		}
		c.t = t0.Add(s.at)
		if _, r := in.Verify(ctx, "good"); r != s.want {
			t.Errorf("step %d: Verify = %v, want %v", i, r, s.want)
		}
		if got := srv.calls.Load(); got != s.wantCalls {
			t.Errorf("step %d: endpoint calls = %d, want %d", i, got, s.wantCalls)
		}
	}
}

func TestIntrospectorLimits(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"active":true,"sub":"%s"}`, strings.Repeat("a", 2000))
	}))
	defer big.Close()
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release) // before Close, which waits for handlers
	notJSON := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html>")
	}))
	defer notJSON.Close()
	tests := []struct {
		name string
		url  string
	}{{"response too large", big.URL}, {"timeout", hang.URL}, {"not JSON", notJSON.URL}}
	for _, tt := range tests {
		in := newTestIntrospector(t, tt.url, &clock{t0}, func(c *IntrospectionConfig) {
			c.MaxResponseBytes = 1024
			c.Timeout = 50 * time.Millisecond
			c.Issuer, c.Audiences = "", nil
		})
		if _, r := in.Verify(context.Background(), "tok"); r != Unavailable {
			t.Errorf("%s: Verify = %v, want %v", tt.name, r, Unavailable)
		}
	}
	if _, err := NewIntrospector(IntrospectionConfig{Endpoint: "ftp://x"}); err == nil {
		t.Errorf("NewIntrospector(ftp endpoint) error = nil")
	}
}

// TestIntrospectorAnswerShapes: RFC 7662 2.2 and RFC 9068: only an active access token is
// accepted; active must be the JSON literal true.
func TestIntrospectorAnswerShapes(t *testing.T) {
	const claims = `"sub":"alice","iss":"https://idp.example","aud":"warden"`
	tests := []struct {
		name, answer string
		types        []string
		want         Reason
	}{
		{"no token_type", `{"active":true,` + claims + `}`, nil, OK},
		{"access_token", `{"active":true,"token_type":"access_token",` + claims + `}`, nil, OK},
		{"Bearer", `{"active":true,"token_type":"Bearer",` + claims + `}`, nil, OK},
		{"bearer lower case", `{"active":true,"token_type":"bearer",` + claims + `}`, nil, OK},
		{"BEARER", `{"active":true,"token_type":"BEARER",` + claims + `}`, nil, OK},
		{"refresh_token", `{"active":true,"token_type":"refresh_token",` + claims + `}`, nil, WrongTokenType},
		{"id_token", `{"active":true,"token_type":"urn:ietf:params:oauth:token-type:id_token",` + claims + `}`, nil, WrongTokenType},
		{"empty token_type", `{"active":true,"token_type":"",` + claims + `}`, nil, WrongTokenType},
		{"token_type not a string", `{"active":true,"token_type":1,` + claims + `}`, nil, Malformed},
		{"token_type null", `{"active":true,"token_type":null,` + claims + `}`, nil, OK},
		{"DPoP not configured", `{"active":true,"token_type":"DPoP",` + claims + `}`, nil, WrongTokenType},
		{"DPoP configured", `{"active":true,"token_type":"DPoP",` + claims + `}`, []string{"DPoP"}, OK},
		{"Bearer not configured", `{"active":true,"token_type":"Bearer",` + claims + `}`, []string{"DPoP"}, WrongTokenType},
		{"active string", `{"active":"true",` + claims + `}`, nil, Malformed},
		{"active number", `{"active":1,` + claims + `}`, nil, Malformed},
		{"active null", `{"active":null,` + claims + `}`, nil, Inactive},
		{"active missing", `{` + claims + `}`, nil, Inactive},
		{"active false", `{"active":false,"token_type":"access_token",` + claims + `}`, nil, Inactive},
		{"refresh inactive", `{"active":false,"token_type":"refresh_token"}`, nil, Inactive},
		{"not an object", `[true]`, nil, Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newIntroServer(t, map[string]string{"tok": tt.answer})
			in := newTestIntrospector(t, srv.URL, &clock{t0}, func(c *IntrospectionConfig) { c.TokenTypes = tt.types })
			if _, r := in.Verify(context.Background(), "tok"); r != tt.want {
				t.Errorf("Verify = %v, want %v", r, tt.want)
			}
		})
	}
}

// TestIntrospectorHang: against an endpoint that never answers, a verification ends before
// its caller's deadline (with Unavailable), and the hangs open the breaker, after which no
// call reaches the endpoint. (The deadline is generous for a loaded machine; the 200 ms one
// Envoy uses is tested over the real server in cmd/warden.)
func TestIntrospectorHang(t *testing.T) {
	srv := newHangServer(t)
	in := newTestIntrospector(t, srv.URL, &clock{t0}, func(c *IntrospectionConfig) { c.BreakerFailures = 3 })
	for i := range 10 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, r := in.Verify(ctx, fmt.Sprint("tok", i))
		late := ctx.Err()
		cancel()
		if r != Unavailable || late != nil {
			t.Fatalf("call %d: Verify = %v (caller's context: %v), want Unavailable before the deadline", i, r, late)
		}
	}
	if got := srv.calls.Load(); got != 3 {
		t.Errorf("endpoint calls = %d, want 3 (then the breaker opens)", got)
	}
	if st := in.Guard().State(); st != budget.Open {
		t.Errorf("breaker state = %v, want open", st)
	}
}

type hangServer struct {
	*httptest.Server
	calls atomic.Int64
}

// newHangServer starts an endpoint that answers only when the request is given up.
func newHangServer(t *testing.T) *hangServer {
	s := &hangServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client leaving
		<-r.Context().Done()
	}))
	t.Cleanup(s.Close)
	return s
}

// FuzzIntrospectionJudge: whatever the endpoint answers, judge does not panic, and it accepts
// only an answer whose active is JSON true and whose token_type, if any, is an access token.
func FuzzIntrospectionJudge(f *testing.F) {
	for _, s := range []string{
		`{"active":true,"sub":"a"}`, `{"active":true,"sub":"a","token_type":"refresh_token"}`,
		`{"active":"true","sub":"a"}`, `{"active":true,"sub":"a","token_type":"bearer","aud":["x"],"exp":1e20}`,
		`{"active":true,"sub":"a","active":false}`, `null`, `[]`,
	} {
		f.Add([]byte(s))
	}
	in, err := NewIntrospector(IntrospectionConfig{Endpoint: "http://127.0.0.1:1/", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		res := in.judge(body, t0)
		if res.r != OK {
			return
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("accepted an answer that is not a JSON object: %q", body)
		}
		var r struct {
			Active    bool    `json:"active"`
			TokenType *string `json:"token_type"`
		}
		if err := json.Unmarshal(body, &r); err != nil || !r.Active {
			t.Fatalf("accepted an answer whose active is not true: %q", body)
		}
		if r.TokenType != nil && !strings.EqualFold(*r.TokenType, "access_token") && !strings.EqualFold(*r.TokenType, "bearer") {
			t.Fatalf("accepted token_type %q", *r.TokenType)
		}
	})
}

// TestIntrospectionScopesSplitOnlyOnSpace: an introspection answer's scope string is split on
// U+0020 alone (RFC 6749 §3.3), so "read\u00a0admin" is one scope that grants nothing, never
// "read" and "admin" (strings.Fields split it, a wrong allow on an admin route).
func TestIntrospectionScopesSplitOnlyOnSpace(t *testing.T) {
	const claims = `"sub":"alice","iss":"https://idp.example","aud":"warden"`
	tests := []struct {
		scope string
		want  []string
	}{
		{`read write`, []string{"read", "write"}},
		{`read\u00a0admin`, []string{"read\u00a0admin"}},
		{`admin\u2003`, []string{"admin\u2003"}},
		{`read\tadmin`, []string{"read\tadmin"}},
		{`  read   write `, []string{"read", "write"}},
	}
	for _, tt := range tests {
		srv := newIntroServer(t, map[string]string{"tok": `{"active":true,"scope":"` + tt.scope + `",` + claims + `}`})
		in := newTestIntrospector(t, srv.URL, &clock{t0}, nil)
		p, r := in.Verify(context.Background(), "tok")
		if r != OK {
			t.Fatalf("scope %q: Verify = %v, want OK", tt.scope, r)
		}
		if !slices.Equal(p.Scopes, tt.want) {
			t.Errorf("scope %q: got scopes %q, want %q", tt.scope, p.Scopes, tt.want)
		}
	}
}
