package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/webhook"
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
		p, err := authn.NewPepper([]byte(benchPepper))
		must(err)
		var b strings.Builder
		for i := range requests {
			key, parsed, err := authn.NewAPIKey(authn.EnvLive)
			must(err)
			d := p.Digest(parsed.Secret)
			f.keys = append(f.keys, key)
			fmt.Fprintf(&b, "      - {id: %s, env: live, digest: %s, owner: %s, tenant: acme, roles: [user]}\n",
				parsed.ID, hex.EncodeToString(d[:]), user(i))
		}
		f.keysYAML = b.String()

		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		pub, err := k.PublicKey.ECDH()
		must(err)
		raw := pub.Bytes() // 0x04 || X || Y
		b64 := base64.RawURLEncoding.EncodeToString
		f.jwksJSON = fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"%s","y":"%s"}]}`, b64(raw[1:33]), b64(raw[33:]))
		h, _ := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"})
		for i := range benchJWTs {
			c, _ := json.Marshal(map[string]any{"iss": benchIssuer, "aud": "warden", "sub": user(i),
				"tenant": "acme", "roles": []string{"user"}, "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
			signing := b64(h) + "." + b64(c)
			sum := sha256.Sum256([]byte(signing))
			r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
			must(err)
			sig := make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
			f.jwts = append(f.jwts, signing+"."+b64(sig))
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
// a JWT issuer, a route with a per-user limit, a per-user CheckRateLimit domain, a GitHub
// webhook source (replay protection off: the data file repeats its deliveries), and the
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
webhooks:
  sources:
    - name: gh
      scheme: github
      secrets: [file:{{.Dir}}/webhook-secret]
`)
	return b.String()
}
