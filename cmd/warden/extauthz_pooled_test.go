package main

import (
	"context"
	"slices"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/internal/testcred"
)

// pooledApp is Warden with two API keys (user-1; user-2, with a tier and scopes, so that its
// answer sets headers that user-1's removes) and a route limited per user on the in-memory
// store: the ext_authz path of the bench's "API key + route + limit" rows.
func pooledApp(t *testing.T) (*app, [2]string) {
	t.Helper()
	var keys [2]string
	entries := ""
	for i := range keys {
		k, err := testcred.NewKey(exampleEnv["WARDEN_PEPPER"], authn.EnvLive)
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k.Key
		e := k.Entry("live", "user-"+string(rune('1'+i)), "acme", "user")
		if i == 1 {
			e = strings.TrimSuffix(e, "}") + ", tier: gold, scopes: [orders:read]}"
		}
		entries += "      - " + e + "\n"
	}
	a := handlersApp(t, `authn:
  api_keys:
    environment: live
    pepper: "${WARDEN_PEPPER}"
    keys:
`+entries+`authz:
`+userOrdersAuthz+`      strip_headers: [x-internal]
`+userOrdersPerUserLimit+`          rate_limit: {name: per_user, unit: second, requests_per_unit: 1000000000}
envoy:
  ext_authz: {enabled: true}
`)
	return a, keys
}

// pooledRequest is user-(i+1)'s request for their own orders with key, carrying a client's
// copy of an identity header (which the answer must remove) and extra.
func pooledRequest(i int, key string, extra map[string]string) *authv3.CheckRequest {
	path := "/v1/users/user-" + string(rune('1'+i)) + "/orders"
	h := map[string]string{":path": path, "authorization": "Bearer " + key, "x-warden-subject": "someone-else"}
	for k, v := range extra {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path + "?page=1", Host: "api", Headers: h}}}}
}

// TestExtAuthzAnswerOutlivesItsParts: the ext_authz adapter hands Warden's answer back for
// reuse once converted (service.Server.CheckPooled), so Envoy's answer must hold nothing of
// it but strings: an answer is unchanged by the calls after it, which reuse its parts for
// another principal, other headers to remove and other rate-limit headers.
func TestExtAuthzAnswerOutlivesItsParts(t *testing.T) {
	a, keys := pooledApp(t)
	ctx := context.Background()
	first, err := a.envoy.auth.Check(ctx, pooledRequest(0, keys[0], map[string]string{"x-warden-tier": "gold"}))
	if err != nil || first.GetOkResponse() == nil {
		t.Fatalf("first: got %v, %v; want allowed", first, err)
	}
	want := proto.Clone(first)
	rm := first.GetOkResponse().GetHeadersToRemove()
	if !hasUpstream(first, "x-warden-subject", "user-1") || !slices.Contains(rm, "x-warden-tier") || !slices.Contains(rm, "x-internal") {
		t.Fatalf("first: got %v, want x-warden-subject: user-1, and x-warden-tier (user-1 has none) and x-internal (strip_headers) removed", first)
	}
	for range 20 {
		resp, err := a.envoy.auth.Check(ctx, pooledRequest(1, keys[1], map[string]string{"x-warden-roles": "admin", "x-warden-credential-id": "x"}))
		if err != nil || !hasUpstream(resp, "x-warden-subject", "user-2") {
			t.Fatalf("later: got %v, %v; want user-2 allowed", resp, err)
		}
	}
	if !proto.Equal(first, want) {
		t.Errorf("the first answer changed after later calls:\ngot  %v\nwant %v", first, want)
	}
}

func hasUpstream(resp *authv3.CheckResponse, name, value string) bool {
	for _, h := range resp.GetOkResponse().GetHeaders() {
		if h.GetHeader().GetKey() == name && h.GetHeader().GetValue() == value {
			return true
		}
	}
	return false
}

// TestExtAuthzAPIKeyRouteLimitAllocs: an allowed ext_authz decision with an API key, a route
// and a rate limit allocates its Warden answer (response, principal, identity headers,
// rate-limit statuses and headers) once per call at most, reused from one call to the next:
// 4 allocations in all (9 before CheckPooled, 6 before the adapter kept an allow's header
// options in its own block).
func TestExtAuthzAPIKeyRouteLimitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector (sync.Pool drops items at random)")
	}
	a, keys := pooledApp(t)
	reqs := make([]*authv3.CheckRequest, 300)
	for i := range reqs {
		reqs[i] = pooledRequest(0, keys[0], nil)
	}
	ctx, i := context.Background(), 0
	if resp, err := a.envoy.auth.Check(ctx, reqs[len(reqs)-1]); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("got %v, %v; want allowed", resp, err)
	}
	n := testing.AllocsPerRun(200, func() {
		_, _ = a.envoy.auth.Check(ctx, reqs[i])
		i++
	})
	if n > 4 {
		t.Errorf("got %v allocs per decision, want at most 4", n)
	}
}
