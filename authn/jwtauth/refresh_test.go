package jwtauth_test

import (
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/internal/testutil"
)

// A request with an unknown kid waits for the refetch at most UnknownKIDWait (or not at
// all); the fetch completes in the background and the next request uses its keys. The JWKS
// server holds its answer until the request has returned, so a request that waited for the
// fetch could not return at all.
func TestUnknownKIDWaitIsBounded(t *testing.T) {
	k := fixture()
	for _, wait := range []time.Duration{-1, 20 * time.Millisecond} {
		t.Run(wait.String(), func(t *testing.T) {
			release, held := make(chan struct{}), make(chan struct{}, 1)
			var hits atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if hits.Add(1) > 1 {
					held <- struct{}{}
					<-release
				}
				_, _ = w.Write(defaultJWKS(k))
			}))
			t.Cleanup(srv.Close)
			t.Cleanup(func() {
				select {
				case <-release:
				default:
					close(release)
				}
			})
			clock := newClock()
			v, err := jwtauth.New(jwtauth.Config{
				Issuers:        []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}},
				UnknownKIDWait: wait,
				Now:            clock.Now,
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			// The first set lacks "ed-2"; the second fetch (held) will not have it either,
			// but the point is that the request returns while that fetch is in flight.
			clock.Advance(time.Minute)
			tok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed-2"}, claimsAt(clock.Now()))
			if _, got := v.Verify(context.Background(), tok); got != authn.Unknown {
				t.Fatalf("got %v, want %v", got, authn.Unknown)
			}
			<-held // the refetch reached the server and is held there
			close(release)
			// The background fetch finishes (Refresh joins it or fetches again).
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			tok = sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed"}, claimsAt(clock.Now()))
			if _, got := v.Verify(context.Background(), tok); got != authn.OK {
				t.Errorf("known kid after the fetch: got %v, want ok", got)
			}
		})
	}
}

// Run loads keys at once, refreshes them every RefreshInterval, and returns nil when its
// context ends.
func TestRunRefreshesInTheBackground(t *testing.T) {
	k := fixture()
	srv := newJWKSServer(t, jwks(jwkRSA(&k.rsa.PublicKey, "old")))
	v, err := jwtauth.New(jwtauth.Config{
		Issuers: []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience},
			JWKSURL: srv.URL, RefreshInterval: time.Millisecond}},
		UnknownKIDWait: -1, // only Run may fetch the new key
		Now:            newClock().Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.set(jwks(jwkEd(k.ed.Public().(ed25519.PublicKey), "new")))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	tok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "new"}, claimsAt(t0))
	testutil.Poll(10*time.Second, func() bool { return srv.hits.Load() >= 3 })
	if _, got := v.Verify(context.Background(), tok); got != authn.OK {
		t.Errorf("after %d background fetches: got %v, want ok", srv.hits.Load(), got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: got %v, want nil", err)
	}
}

// The issuer is chosen by the unverified iss, then bound by the signature: a token that
// names issuer B but is signed with issuer A's key does not verify, even with the same kid.
func TestIssuerSelection(t *testing.T) {
	k := fixture()
	srvA := newJWKSServer(t, jwks(jwkEC(&k.ec.PublicKey, "k1")))
	srvB := newJWKSServer(t, jwks(jwkEC(&k.ec2.PublicKey, "k1")))
	v, err := jwtauth.New(jwtauth.Config{
		Issuers: []jwtauth.IssuerConfig{
			{Issuer: "https://a.test/", Audiences: []string{testAudience}, JWKSURL: srvA.URL},
			{Issuer: "https://b.test/", Audiences: []string{testAudience}, JWKSURL: srvB.URL,
				Claims: jwtauth.ClaimsConfig{Tenant: "iss"}},
		},
		Now: newClock().Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	h := map[string]any{"alg": "ES256", "kid": "k1"}
	for _, tc := range []struct {
		name, iss  string
		key        *testKeys
		useSecond  bool
		want       authn.Reason
		wantTenant string
	}{
		{"A signed by A", "https://a.test/", k, false, authn.OK, ""},
		{"B signed by B", "https://b.test/", k, true, authn.OK, "https://b.test/"},
		{"B signed by A", "https://b.test/", k, false, authn.BadSignature, ""},
		{"A signed by B", "https://a.test/", k, true, authn.BadSignature, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := k.ec
			if tc.useSecond {
				key = k.ec2
			}
			p, got := v.Verify(context.Background(), sign(t, "ES256", key, h, with(claimsAt(t0), "iss", tc.iss)))
			if got != tc.want || p.Tenant != tc.wantTenant {
				t.Errorf("got %v tenant %q, want %v tenant %q", got, p.Tenant, tc.want, tc.wantTenant)
			}
		})
	}
}

// A request with an unknown kid whose refetch hangs gets its answer (Unknown, a 401) before
// its deadline, with time left to send it, however long UnknownKIDWait is: the wait runs
// under the budget of the caller's deadline. Also the first request of an issuer whose set
// was never loaded: Unavailable (a 503) before the deadline.
func TestUnknownKIDWaitWithinDeadline(t *testing.T) {
	k := fixture()
	for _, loaded := range []bool{true, false} {
		release := make(chan struct{})
		var hits atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !loaded || hits.Add(1) > 1 {
				<-release // a hanging JWKS endpoint
			}
			_, _ = w.Write(defaultJWKS(k))
		}))
		clock := newClock()
		v, err := jwtauth.New(jwtauth.Config{
			Issuers:        []jwtauth.IssuerConfig{{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL}},
			UnknownKIDWait: 5 * time.Second,
			Now:            clock.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := authn.Unavailable
		if loaded {
			if err := v.Refresh(context.Background()); err != nil {
				t.Fatal(err)
			}
			want = authn.Unknown
		}
		clock.Advance(time.Minute)
		tok := sign(t, "EdDSA", k.ed, map[string]any{"alg": "EdDSA", "kid": "ed-2"}, claimsAt(clock.Now()))
		const deadline = 200 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		start := time.Now()
		_, got := v.Verify(ctx, tok)
		took, ctxErr := time.Since(start), ctx.Err()
		cancel()
		close(release)
		srv.Close()
		if got != want {
			t.Errorf("loaded %v: got %v, want %v", loaded, got, want)
		}
		if ctxErr != nil {
			t.Errorf("loaded %v: answered after %v, past the %v deadline: want an answer with time left to send it", loaded, took, deadline)
		}
	}
}
