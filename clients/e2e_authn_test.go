package clients_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/clients"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// The tests in this file run against a real Warden started with testConfig and present the
// static API keys of keys (alice: tenant acme, role reader).

// unknownKey is a well-formed live key that no store holds.
func unknownKey(t *testing.T) string {
	t.Helper()
	k, _, err := authn.NewAPIKey(authn.EnvLive)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// asKey is an outgoing context presenting key as a bearer token, or none if key is "".
func asKey(key string) context.Context {
	if key == "" {
		return context.Background()
	}
	return withToken(key)
}

// follow opens the Follow stream and returns the subject its handler saw, and the header
// metadata.
func follow(ctx context.Context, conn *grpc.ClientConn) (string, metadata.MD, error) {
	st, err := conn.NewStream(ctx, &shopDesc.Streams[1], "/test.v1.Shop/Follow")
	if err != nil {
		return "", nil, err
	}
	if err := st.SendMsg(&emptypb.Empty{}); err != nil {
		return "", nil, err
	}
	out := new(wrapperspb.StringValue)
	err = st.RecvMsg(out)
	hdr, _ := st.Header()
	return out.GetValue(), hdr, err
}

const wwwAuthenticate = `Bearer realm="warden"`

func TestEndToEndAuthenticatedRoutes(t *testing.T) {
	wc := clients.NewClient(dial(t, startWarden(t, testConfig)), clients.WithTimeout(5*time.Second))
	shop := startShop(t, wc)
	unknown := unknownKey(t)

	t.Run("unary interceptor", func(t *testing.T) {
		for _, tc := range []struct {
			method, key string
			want        codes.Code
			wantSub     string
			wantWWW     string // www-authenticate header metadata
		}{
			{"GetOrder", keys.alice, codes.OK, "alice", ""},
			{"GetOrder", "", codes.Unauthenticated, "", wwwAuthenticate},
			{"GetOrder", unknown, codes.Unauthenticated, "", wwwAuthenticate + `, error="invalid_token"`},
			{"Cancel", keys.alice, codes.PermissionDenied, "", ""}, // orders:write, alice reads only
		} {
			var hdr metadata.MD
			sub, err := callShop(asKey(tc.key), shop, tc.method, grpc.Header(&hdr))
			if status.Code(err) != tc.want || sub != tc.wantSub {
				t.Errorf("%s with key %.12q: got (%q, %v), want (%q, %v)", tc.method, tc.key, sub, err, tc.wantSub, tc.want)
			}
			if got := strings.Join(hdr.Get("www-authenticate"), "|"); got != tc.wantWWW {
				t.Errorf("%s with key %.12q: www-authenticate %q, want %q", tc.method, tc.key, got, tc.wantWWW)
			}
		}
	})

	t.Run("stream interceptor", func(t *testing.T) {
		sub, _, err := follow(asKey(keys.alice), shop)
		if err != nil || sub != "alice" {
			t.Fatalf("Follow as alice: got (%q, %v), want (\"alice\", nil)", sub, err)
		}
		sub, hdr, err := follow(context.Background(), shop)
		if status.Code(err) != codes.Unauthenticated || sub != "" {
			t.Fatalf("Follow without credentials: got (%q, %v), want UNAUTHENTICATED", sub, err)
		}
		if got := strings.Join(hdr.Get("www-authenticate"), "|"); got != wwwAuthenticate {
			t.Errorf("Follow without credentials: www-authenticate %q, want %q", got, wwwAuthenticate)
		}
	})

	t.Run("identity metadata replaces the client's", func(t *testing.T) {
		// Echo has no route: the route table denies it. Map it to an action instead, so that
		// it goes through Check, which sends identity headers.
		echo := startShop(t, wc, clients.WithActions(func(name string) (string, *wardenv1.Resource, bool) {
			return "orders:read", &wardenv1.Resource{Type: "orders", Owner: "alice"}, name == "/test.v1.Shop/Echo"
		}))
		ctx := metadata.AppendToOutgoingContext(asKey(keys.alice), "x-warden-subject", "mallory", "x-warden-roles", "admin")
		got, err := callShop(ctx, echo, "Echo")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"x-warden-subject=alice", "x-warden-tenant=acme", "x-warden-roles=reader", "x-warden-tier=free"} {
			if !strings.Contains(got, want) {
				t.Errorf("handler's metadata %q: want %s", got, want)
			}
		}
		if strings.Contains(got, "mallory") || strings.Contains(got, "admin") {
			t.Errorf("handler's metadata %q: the client's x-warden-* values reached the handler", got)
		}
	})

	t.Run("middleware with an owner route", func(t *testing.T) {
		type seen struct {
			p      *wardenv1.Principal
			header string
		}
		saw := make(chan seen, 1)
		h := clients.Middleware(wc)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, _ := clients.PrincipalFrom(r.Context())
			saw <- seen{p, r.Header.Get("X-Warden-Subject")}
		}))
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		for _, tc := range []struct {
			method, path, key string
			want              int
			wantWWW           string
		}{
			{"GET", "/v1/users/alice/orders", keys.alice, 200, ""},
			{"GET", "/v1/users/bob/orders", keys.alice, 404, ""},    // not the owner: looks missing
			{"POST", "/v1/users/alice/orders", keys.alice, 403, ""}, // orders:write
			{"GET", "/v1/users/alice/orders", "", 401, wwwAuthenticate},
			{"GET", "/v1/users/alice/orders", unknown, 401, wwwAuthenticate + `, error="invalid_token"`},
		} {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			req.Header.Set("X-Warden-Subject", "mallory")
			if tc.key != "" {
				req.Header.Set("Authorization", "Bearer "+tc.key)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			name := tc.method + " " + tc.path
			if resp.StatusCode != tc.want || resp.Header.Get("WWW-Authenticate") != tc.wantWWW {
				t.Errorf("%s with key %.12q: got %d, WWW-Authenticate %q, body %s; want %d, %q",
					name, tc.key, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tc.want, tc.wantWWW)
				continue
			}
			if tc.want != 200 {
				continue
			}
			s := <-saw
			if p := s.p; p.GetSubject() != "alice" || p.GetTenant() != "acme" || p.GetMethod() != wardenv1.AuthMethod_AUTH_METHOD_API_KEY ||
				strings.Join(p.GetRoles(), ",") != "reader" || p.GetCredentialId() == "" {
				t.Errorf("%s: principal %v, want alice of acme, reader, by API key", name, p)
			}
			if s.header != "alice" {
				t.Errorf("%s: handler saw X-Warden-Subject %q, want Warden's alice", name, s.header)
			}
		}
	})
}

// TestEndToEndActions runs the same requests through WithActions with and without an
// AuthnCache: one Check each, or Authenticate (on a miss) and Authorize.
func TestEndToEndActions(t *testing.T) {
	wc := clients.NewClient(dial(t, startWarden(t, testConfig)), clients.WithTimeout(5*time.Second))
	unknown := unknownKey(t)
	actions := func(name string) (string, *wardenv1.Resource, bool) {
		switch name {
		case "/test.v1.Shop/GetOrder":
			return "orders:read", &wardenv1.Resource{Type: "orders", Id: "o-1", Owner: "alice"}, true
		case "/test.v1.Shop/Ping":
			return "orders:read", &wardenv1.Resource{Type: "orders", Id: "o-2", Owner: "bob"}, true
		case "/test.v1.Shop/Cancel":
			return "orders:write", &wardenv1.Resource{Type: "orders", Id: "o-1", Owner: "alice"}, true
		}
		return "", nil, false
	}
	for _, mode := range []struct {
		name string
		opts []clients.HandlerOption
	}{
		{"check", []clients.HandlerOption{clients.WithActions(actions)}},
		{"cache", []clients.HandlerOption{clients.WithActions(actions), clients.WithAuthnCache(clients.NewAuthnCache(clients.CacheConfig{}))}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			shop := startShop(t, wc, mode.opts...)
			// Twice each, so that the cache answers the second round.
			for round := 1; round <= 2; round++ {
				for _, tc := range []struct {
					method, key string
					want        codes.Code
					wantSub     string
					wantWWW     string
				}{
					{"GetOrder", keys.alice, codes.OK, "alice", ""},
					{"Ping", keys.alice, codes.NotFound, "", ""},           // bob's order looks missing
					{"Cancel", keys.alice, codes.PermissionDenied, "", ""}, // orders:write
					{"GetOrder", "", codes.Unauthenticated, "", wwwAuthenticate},
					{"GetOrder", unknown, codes.Unauthenticated, "", wwwAuthenticate + `, error="invalid_token"`},
				} {
					var hdr metadata.MD
					sub, err := callShop(asKey(tc.key), shop, tc.method, grpc.Header(&hdr))
					if status.Code(err) != tc.want || sub != tc.wantSub {
						t.Errorf("round %d, %s with key %.12q: got (%q, %v), want (%q, %v)", round, tc.method, tc.key, sub, err, tc.wantSub, tc.want)
					}
					if got := strings.Join(hdr.Get("www-authenticate"), "|"); got != tc.wantWWW {
						t.Errorf("round %d, %s with key %.12q: www-authenticate %q, want %q", round, tc.method, tc.key, got, tc.wantWWW)
					}
				}
			}
		})
	}
}

// TestEndToEndCacheRevocation shows the AuthnCache's staleness bound against a real Warden: a
// key revoked through AdminService is refused by Warden at once, but a process that cached it
// keeps accepting it until TTL after the Authenticate call that filled its entry, and no
// longer. The cache's clock walks a fixed grid of instants; Warden's clock is real.
func TestEndToEndCacheRevocation(t *testing.T) {
	conn := dial(t, startWarden(t, testConfig))
	wc := clients.NewClient(conn, clients.WithTimeout(5*time.Second))
	admin := wardenv1.NewAdminServiceClient(conn)
	asAdmin := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+keys.admin)

	const ttl = 5 * time.Second
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cache := clients.NewAuthnCache(clients.CacheConfig{TTL: ttl, Now: clk.now})
	actions := func(string) (string, *wardenv1.Resource, bool) {
		return "catalog:read", &wardenv1.Resource{Type: "catalog"}, true // any reader
	}
	cached := startShop(t, wc, clients.WithActions(actions), clients.WithAuthnCache(cache))
	uncached := startShop(t, wc, clients.WithActions(actions))
	newKey := func(owner string) (key, id string) {
		t.Helper()
		r, err := admin.CreateApiKey(asAdmin, &wardenv1.CreateApiKeyRequest{Owner: owner, Tenant: "acme", Roles: []string{"reader"}})
		if err != nil {
			t.Fatalf("CreateApiKey: %v", err)
		}
		return r.GetSecret(), r.GetKey().GetId()
	}
	revoke := func(id string) {
		t.Helper()
		if _, err := admin.RevokeApiKey(asAdmin, &wardenv1.RevokeApiKeyRequest{Id: id}); err != nil {
			t.Fatalf("RevokeApiKey: %v", err)
		}
	}
	call := func(step string, shop *grpc.ClientConn, key, owner string, want codes.Code) {
		t.Helper()
		sub, err := callShop(withToken(key), shop, "GetOrder")
		wantSub := owner
		if want != codes.OK {
			wantSub = ""
		}
		if status.Code(err) != want || sub != wantSub {
			t.Fatalf("%s: got (%q, %v), want (%q, %v)", step, sub, err, wantSub, want)
		}
	}

	carol, carolID := newKey("carol")
	call("t=0: first use fills the cache", cached, carol, "carol", codes.OK)
	call("t=0: without the cache", uncached, carol, "carol", codes.OK)

	revoke(carolID)
	ar, err := wc.Authenticate(context.Background(), &wardenv1.Credentials{ApiKey: carol})
	if err != nil || ar.GetAuthenticated() || ar.GetReason() != wardenv1.DenyReason_DENY_REASON_REVOKED {
		t.Fatalf("Authenticate after revocation: got (%v, %v), want REVOKED", ar, err)
	}
	call("after revocation, without the cache", uncached, carol, "carol", codes.Unauthenticated)

	call("after revocation, t=0: stale, from the cache", cached, carol, "carol", codes.OK)
	clk.advance(ttl - time.Nanosecond)
	call("t=TTL-1ns: still stale, from the cache", cached, carol, "carol", codes.OK)
	clk.advance(time.Nanosecond)
	call("t=TTL: the entry expired, Warden refuses", cached, carol, "carol", codes.Unauthenticated)
	clk.advance(time.Nanosecond)
	call("t=TTL+1ns: refusals are not cached, still refused", cached, carol, "carol", codes.Unauthenticated)

	// Invalidate ends the window at once, for an application that learns of the revocation.
	dave, daveID := newKey("dave")
	call("dave: first use fills the cache", cached, dave, "dave", codes.OK)
	revoke(daveID)
	call("dave: revoked, stale, from the cache", cached, dave, "dave", codes.OK)
	if n := cache.Invalidate(daveID); n != 1 {
		t.Fatalf("Invalidate(%s): removed %d entries, want 1", daveID, n)
	}
	call("dave: after Invalidate", cached, dave, "dave", codes.Unauthenticated)
}
