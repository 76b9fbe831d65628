package envoy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authz"
	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
	"github.com/wardenhq/warden/service"
)

// TestIdentityHeadersNeverReachUpstream sends every identity header Warden sets, and one it
// does not set (yet), in every case and repeated, in both of Envoy's header encodings, through
// every way ext_authz answers: no value of the client's own may reach the upstream.
func TestIdentityHeadersNeverReachUpstream(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pol, err := authz.Compile(authz.Config{Routes: []authz.RouteConfig{{Name: "open", Method: "GET", Path: "/open", Public: true}}})
	if err != nil {
		t.Fatal(err)
	}
	real := service.New(service.Config{Logger: quiet, Deps: &service.Deps{Policy: pol, Auditor: authz.NewAuditor(quiet)}})
	// A Warden that speaks only of the headers it sets (as one built before x-warden-impersonate
	// would): the adapter must still remove the rest.
	knownOnly := &fakeChecker{decide: func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200,
			UpstreamHeaders:         []*wardenv1.Header{{Name: idheader.Subject, Value: "alice"}},
			UpstreamHeadersToRemove: []string{idheader.Tenant, idheader.Roles, idheader.Scopes, idheader.Method, idheader.CredentialID, idheader.Tier}}, nil
	}}
	down := &fakeChecker{decide: func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return nil, status.Error(codes.Unavailable, "backend down")
	}}
	denied := &fakeChecker{decide: func(*wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
		return &wardenv1.CheckResponse{HttpStatus: 403}, nil
	}}
	for _, m := range []struct {
		name    string
		checker envoy.Checker
		cfg     envoy.AuthConfig
		context map[string]string
		allowed bool
	}{
		{"allow (Warden)", real, envoy.AuthConfig{}, nil, true},
		{"allow (Warden naming only its own headers)", knownOnly, envoy.AuthConfig{}, nil, true},
		{"deny", denied, envoy.AuthConfig{}, nil, false},
		{"fail open", down, envoy.AuthConfig{FailureMode: envoy.FailOpen}, nil, true},
		{"fail open (route)", down, envoy.AuthConfig{}, map[string]string{envoy.ContextKeyFailureMode: "open"}, true},
		{"fail closed", down, envoy.AuthConfig{}, nil, false},
	} {
		t.Run(m.name, func(t *testing.T) {
			cfg := m.cfg
			cfg.Logger = quiet
			authc, _ := serveEnvoy(t, envoy.NewAuthServer(m.checker, cfg), nil)
			for _, raw := range []bool{false, true} {
				for _, name := range append(idheaderNames(), idheader.Prefix+"impersonate") {
					for _, spelled := range []string{name, http.CanonicalHeaderKey(name), strings.ToUpper(name)} {
						req := envoytest.Request{Method: "GET", Path: "/open", Host: "api", RawHeaders: raw, Context: m.context,
							Headers: [][2]string{{spelled, "forged-root"}, {"x-request-id", "r1"}, {spelled, "forged-root-2"}}}
						resp, err := authc.Check(context.Background(), req.CheckRequest())
						if err != nil {
							t.Fatal(err)
						}
						if !m.allowed {
							if resp.GetDeniedResponse() == nil {
								t.Fatalf("%s: got %v, want a denial", spelled, resp)
							}
							continue
						}
						up := upstream(t, req, resp)
						for k, vs := range up {
							if idheader.Reserved(k) && strings.Contains(strings.Join(vs, ","), "forged") {
								t.Errorf("%s (raw header_map %v): the upstream got the client's %s: %q", spelled, raw, k, vs)
							}
						}
						if got := up["x-request-id"]; len(got) != 1 {
							t.Errorf("%s: x-request-id: got %v, want it passed on", spelled, got)
						}
					}
				}
			}
		})
	}
}

func idheaderNames() []string {
	n := idheader.Names()
	return n[:]
}
