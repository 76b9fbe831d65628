package clients_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
)

// forgedValue is what a client sends in its own identity headers.
const forgedValue = "forged-root"

// identityNames are every identity header of ids, and one under its prefix Warden does not
// set (yet): all are Warden's alone.
func identityNames(ids idheader.Set) []string {
	n := ids.Names()
	return append(n[:], ids.Prefix()+"impersonate")
}

// identitySets are the default names and names a deployment configured (WithIdentityHeaders),
// one of them outside the configured prefix.
func identitySets(t *testing.T) []struct {
	name string
	ids  idheader.Set
	opts []clients.HandlerOption
} {
	custom, err := idheader.New(idheader.Config{Prefix: "x-auth-", Subject: "X-User-Id", Tier: "x-plan"})
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name string
		ids  idheader.Set
		opts []clients.HandlerOption
	}{
		{"default names", idheader.Default(), nil},
		{"configured names", custom, []clients.HandlerOption{clients.WithIdentityHeaders(custom)}},
	}
}

// caseVariants are the spellings a client may send a name in.
func caseVariants(name string) []string {
	return []string{name, http.CanonicalHeaderKey(name), strings.ToUpper(name)}
}

// allowWithIdentity answers Check as Warden does on allow: every identity header set or
// removed, nothing said about others.
func allowWithIdentity(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return &wardenv1.CheckResponse{
		Allowed: true, HttpStatus: 200, Principal: &wardenv1.Principal{Subject: "alice"},
		UpstreamHeaders:         []*wardenv1.Header{{Name: idheader.Subject, Value: "alice"}, {Name: idheader.Method, Value: "api_key"}},
		UpstreamHeadersToRemove: []string{idheader.Tenant, idheader.Roles, idheader.Scopes, idheader.CredentialID, idheader.Tier},
	}, nil
}

func denyCheck(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	return &wardenv1.CheckResponse{HttpStatus: 403, Reason: wardenv1.DenyReason_DENY_REASON_MISSING_ROLE}, nil
}

func anyAction(string) (string, *wardenv1.Resource, bool) {
	return "orders:read", &wardenv1.Resource{Type: "orders"}, true
}

// identityMode is one path a request can take through the middleware and interceptors. runs
// says whether the handler runs; calls is how many requests to send (the cache hit is the
// second).
type identityMode struct {
	name   string
	fake   func() *fakeWarden
	client []clients.ClientOption
	opts   []clients.HandlerOption
	runs   bool
	calls  int
}

func identityModes() []identityMode {
	fast := clients.WithRetry(2, time.Millisecond, time.Millisecond)
	downAuthn := func() *fakeWarden {
		return &fakeWarden{check: unavailable, authenticate: func(context.Context, *wardenv1.AuthenticateRequest) (*wardenv1.AuthenticateResponse, error) {
			return nil, status.Error(codes.Unavailable, "backend down")
		}}
	}
	return []identityMode{
		{name: "allow", fake: func() *fakeWarden { return &fakeWarden{check: allowWithIdentity} }, runs: true, calls: 1},
		{name: "deny", fake: func() *fakeWarden { return &fakeWarden{check: denyCheck} }, runs: false, calls: 1},
		{name: "cache hit", fake: func() *fakeWarden { return cacheFake(time.Time{}, 100) },
			opts: []clients.HandlerOption{clients.WithActions(anyAction), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}, runs: true, calls: 2},
		{name: "cache hit (route table)", fake: func() *fakeWarden { return cacheFake(time.Time{}, 100) },
			opts: []clients.HandlerOption{clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}, runs: true, calls: 2},
		{name: "fail open", fake: func() *fakeWarden { return &fakeWarden{check: unavailable} },
			client: []clients.ClientOption{fast, clients.WithAuthFailurePolicy(clients.FailOpen)}, runs: true, calls: 1},
		{name: "fail open (cached authenticate)", fake: downAuthn,
			client: []clients.ClientOption{fast, clients.WithAuthFailurePolicy(clients.FailOpen)},
			opts:   []clients.HandlerOption{clients.WithActions(anyAction), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}, runs: true, calls: 1},
		{name: "fail closed", fake: func() *fakeWarden { return &fakeWarden{check: unavailable} },
			client: []clients.ClientOption{fast}, runs: false, calls: 1},
		{name: "skipped", fake: func() *fakeWarden { return &fakeWarden{check: denyCheck} },
			opts: []clients.HandlerOption{clients.WithSkip("/v1/orders", "/test.v1.Shop/Echo")}, runs: true, calls: 1},
	}
}

// TestIdentityHeadersNeverPassedOn sends every identity header, in every case and repeated,
// through every mode of the middleware and the interceptor, with the default names and with
// configured ones: no value of the client's own may reach the handler.
func TestIdentityHeadersNeverPassedOn(t *testing.T) {
	for _, set := range identitySets(t) {
		t.Run(set.name, func(t *testing.T) { testIdentityHeadersNeverPassedOn(t, set.ids, set.opts) })
	}
}

func testIdentityHeadersNeverPassedOn(t *testing.T, ids idheader.Set, idOpts []clients.HandlerOption) {
	for _, m := range identityModes() {
		t.Run(m.name, func(t *testing.T) {
			wc := clients.NewClient(dial(t, startFake(t, m.fake())), m.client...)
			opts := append(append([]clients.HandlerOption(nil), idOpts...), m.opts...)

			t.Run("http", func(t *testing.T) {
				var ran bool
				var seen http.Header
				h := clients.Middleware(wc, opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					ran, seen = true, r.Header
				}))
				for _, name := range identityNames(ids) {
					for _, spelled := range caseVariants(name) {
						for i := 0; i < m.calls; i++ {
							ran, seen = false, nil
							req := httptest.NewRequest("GET", "/v1/orders", nil)
							req.Header.Set("Authorization", "Bearer good-alice")
							req.Header[spelled] = []string{forgedValue, forgedValue + "-2"} // as sent, not canonicalized
							w := httptest.NewRecorder()
							h.ServeHTTP(w, req)
							if ran != m.runs {
								t.Fatalf("%s: handler ran %v (status %d), want %v", spelled, ran, w.Code, m.runs)
							}
							for k, vs := range seen {
								if ids.Reserved(k) && strings.Contains(strings.Join(vs, ","), forgedValue) {
									t.Errorf("%s (call %d): the handler saw the client's %s: %q", spelled, i+1, k, vs)
								}
							}
						}
					}
				}
			})

			t.Run("grpc", func(t *testing.T) {
				shop := startShop(t, wc, opts...)
				for _, name := range identityNames(ids) {
					for _, spelled := range caseVariants(name) {
						for i := 0; i < m.calls; i++ {
							ctx := metadata.AppendToOutgoingContext(withToken("good-alice"), spelled, forgedValue, spelled, forgedValue+"-2")
							got, err := callShop(ctx, shop, "Echo")
							if (err == nil) != m.runs {
								t.Fatalf("%s: got error %v, want the handler to run: %v", spelled, err, m.runs)
							}
							if strings.Contains(got, forgedValue) {
								t.Errorf("%s (call %d): the handler saw the client's metadata: %q", spelled, i+1, got)
							}
						}
					}
				}
			})
		})
	}
}

// TestMalformedRequestIsBadRequest: Warden's INVALID_ARGUMENT (headers no HTTP message can
// carry) is the end client's fault: 400 / INVALID_ARGUMENT, never a failure to open.
func TestMalformedRequestIsBadRequest(t *testing.T) {
	f := &fakeWarden{check: func(context.Context, *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return nil, status.Error(codes.InvalidArgument, "http.headers: a header name or value contains NUL, CR or LF")
	}}
	wc := clients.NewClient(dial(t, startFake(t, f)), clients.WithAuthFailurePolicy(clients.FailOpen))
	ran := false
	w := httptest.NewRecorder()
	clients.Middleware(wc)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true })).ServeHTTP(w, httptest.NewRequest("GET", "/v1/orders", nil))
	if w.Code != http.StatusBadRequest || ran {
		t.Errorf("middleware: got %d (handler ran: %v), want 400", w.Code, ran)
	}
	if _, err := callShop(context.Background(), startShop(t, wc), "Ping"); status.Code(err) != codes.InvalidArgument {
		t.Errorf("interceptor: got %v, want INVALID_ARGUMENT", err)
	}
}
