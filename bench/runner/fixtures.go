package main

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/webhook"
	"github.com/wardenhq/warden/internal/testcred"
)

// Credentials the scenarios send, made once per run: requests API keys stored as static keys
// (their digests in the config), a few ES256 JWTs from an issuer whose JWKS is a file next to
// the config, and a GitHub webhook secret.
const (
	benchPepper  = "bench-pepper-of-at-least-32-bytes-0123456789"
	benchWebhook = "bench-webhook-secret-0123456789"
	benchIssuer  = "https://issuer.bench"
	benchJWTs    = 4 // the same few tokens repeated: the verified-token cache answers
)

type fixtureSet struct {
	keys      []string // API keys; key i belongs to user-i
	keysYAML  string   // authn.api_keys.keys entries
	jwts      []string
	jwksJSON  string
	ghBodies  [][]byte
	ghHeaders []map[string]string
}

var (
	fixturesOnce sync.Once
	fixtureData  fixtureSet
)

// fixtures returns the run's credentials, making them on first use (panics on a crypto
// failure, which would be a broken machine).
func fixtures() *fixtureSet {
	fixturesOnce.Do(func() {
		f := &fixtureData
		var b strings.Builder
		for i := range requests {
			k, err := testcred.NewKey(benchPepper, authn.EnvLive)
			must(err)
			f.keys = append(f.keys, k.Key)
			b.WriteString("      - " + k.Entry("live", user(i), "acme", "user") + "\n")
		}
		f.keysYAML = b.String()

		is, err := testcred.NewIssuer("")
		must(err)
		f.jwksJSON = is.JWKS()
		for i := range benchJWTs {
			tok, err := is.Token(map[string]any{"iss": benchIssuer, "aud": "warden", "sub": user(i),
				"tenant": "acme", "roles": []string{"user"}, "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
			must(err)
			f.jwts = append(f.jwts, tok)
		}

		for i := range requests {
			body := fmt.Appendf(nil, `{"action":"opened","number":%d,"repository":{"full_name":"acme/shop"},"sender":{"login":"%s"}}`, i, user(i))
			f.ghBodies = append(f.ghBodies, body)
			f.ghHeaders = append(f.ghHeaders, map[string]string{
				"x-hub-signature-256": webhook.SignGitHub(benchWebhook, body),
				"x-github-delivery":   fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
				"x-github-event":      "pull_request",
				"content-type":        "application/json",
			})
		}
	})
	return &fixtureData
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func user(i int) string { return fmt.Sprint("user-", i) }

// benchFiles are written next to the generated config ({{.Dir}}).
func benchFiles() map[string]string {
	return map[string]string{
		"pepper":         benchPepper,
		"webhook-secret": benchWebhook,
		"jwks.json":      fixtures().jwksJSON,
	}
}

// wardenConfig is the config of the rows that need Warden's capabilities: static API keys,
// a JWT issuer, a route with a per-user limit and one with a per-user leased limit (in the
// leaseDomain that the leased RLS row asks too), a per-user CheckRateLimit domain, a GitHub
// webhook source (replay protection off: the data file repeats its deliveries), a
// "benchmem" domain for the Memory section (10 an hour: each key decided once lives for
// minutes, a GCRA key expiring when its bucket is full again), and the
// Envoy adapters (on by default). Limits are high enough that every decision is OK. With
// redis, the limits live in a throwaway Redis.
func wardenConfig(redis bool) string {
	var b strings.Builder
	b.WriteString(`server:
  drain: 10ms
  shutdown_timeout: 2s
`)
	if redis {
		b.WriteString(`redis:
  addrs: ["{{.RedisAddr}}"]
`)
	}
	b.WriteString(`authn:
  api_keys:
    environment: live
    pepper: file:{{.Dir}}/pepper
    keys:
`)
	b.WriteString(fixtures().keysYAML)
	b.WriteString(`  jwt:
    issuers:
      - issuer: ` + benchIssuer + `
        audiences: [warden]
        jwks_file: {{.Dir}}/jwks.json
        claims: {tenant: tenant, roles: roles}
authz:
  roles:
    user: {permissions: ["orders:read"]}
  ownership:
    order: {}
  routes:
    - name: user_orders
      method: GET
      path: /v1/users/{user_id}/orders
      action: orders:read
      resource_type: order
      owner_param: user_id
      rate_limits:
        - domain: api
          descriptors: [{key: user, from: principal.subject}]
    - name: user_orders_leased
      method: GET
      path: /v1/leased/users/{user_id}/orders
      action: orders:read
      resource_type: order
      owner_param: user_id
      rate_limits:
        - domain: benchlease
          descriptors: [{key: user, from: principal.subject}]
rate_limit:
  domains:
    - domain: api
      descriptors:
        - key: user
          rate_limit: {name: per_user, unit: second, requests_per_unit: 100000}
    - domain: bench
      descriptors:
        - key: user
          rate_limit: {name: per_user, unit: second, requests_per_unit: 100000}
    - domain: benchlease
      descriptors:
        - key: user
          rate_limit:
            name: per_user
            algorithm: fixed_window
            period: 87600h
            requests_per_unit: 4000000000
            lease: {units: 50, ttl: 10s}
    - domain: benchmem
      descriptors:
        - key: user
          rate_limit: {name: per_user, unit: hour, requests_per_unit: 10}
webhooks:
  sources:
    - name: gh
      scheme: github
      secrets: [file:{{.Dir}}/webhook-secret]
`)
	return b.String()
}
