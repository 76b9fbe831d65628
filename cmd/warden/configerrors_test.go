package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigMistakesNameTheLine feeds one mistake in each part of each capability section
// and compares the errors, as the user reads them (file:line: field: message), with
// testdata/config-errors.golden.
func TestConfigMistakesNameTheLine(t *testing.T) {
	const pepper = "    pepper: ${WARDEN_PEPPER}\n"
	cases := []struct{ name, yaml string }{
		{"authn unknown field", "authn:\n  api_keys:\n    bogus: 1\n"},
		{"authn nothing enabled", "authn:\n  admin_roles: [x]\n"},
		{"authn identity header", "authn:\n  identity_headers: {subject: \"Bad Name\"}\n  api_keys:\n    environment: live\n" + pepper},
		{"authn api_keys environment", "authn:\n  api_keys:\n    environment: prod\n" + pepper},
		{"authn api_keys pepper missing", "authn:\n  api_keys:\n    environment: live\n"},
		{"authn api_keys pepper short", "authn:\n  api_keys:\n    environment: live\n    pepper: ${SHORT}\n"},
		{"authn api_keys environments", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    environments: [live, nope]\n"},
		{"authn imported format environment", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_formats:\n      - {prefix: acme_, environment: nope}\n"},
		{"authn imported format lengths", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_formats:\n      - {prefix: acme_, min_length: 90, max_length: 40}\n"},
		{"authn imported key both", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_formats: [{prefix: acme_live_}]\n    imported_keys:\n      - key: ${IMPORTED_KEY}\n        digest: 00\n        owner: a\n"},
		{"authn imported key format", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_formats: [{prefix: other_}]\n    imported_keys:\n      - key: ${IMPORTED_KEY}\n        owner: a\n"},
		{"authn imported key environment", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_formats: [{prefix: acme_live_}]\n    imported_keys:\n      - key: ${IMPORTED_KEY}\n        environment: nope\n        owner: a\n"},
		{"authn imported key digest", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    imported_keys:\n      - digest: zz\n        environment: live\n        owner: a\n"},
		{"authn static key id", "authn:\n  api_keys:\n    environment: live\n" + pepper + "    keys:\n      - {id: short, env: live, digest: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef, owner: a}\n"},
		{"authn secret unset", "authn:\n  api_keys:\n    environment: live\n    pepper: ${UNSET}\n"},
		{"authn secret inline", "authn:\n  api_keys:\n    environment: live\n    pepper: inline-value\n"},
		{"authn jwt no key source", "authn:\n  jwt:\n    issuers:\n      - issuer: https://a.example/\n        audiences: [x]\n"},
		{"authn jwt missing file", "authn:\n  jwt:\n    issuers:\n      - issuer: https://a.example/\n        audiences: [x]\n        jwks_file: nope.json\n"},
		{"authn jwt bad duration", "authn:\n  jwt:\n    cache_size: 1\n    unknown_kid_wait: soon\n"},
		{"authn mtls source", "authn:\n  mtls:\n    sources: [spiffe, ip]\n    allow: [a.example]\n"},
		{"authn mtls allow", "authn:\n  mtls:\n    allow: [\"spiffe://x/*/y\"]\n"},
		{"authn mtls identity", "authn:\n  mtls:\n    allow: [a.example]\n    identities:\n      - {match: \"\"}\n"},
		{"authn mtls roots", "authn:\n  mtls:\n    allow: [a.example]\n    gateway_roots_file: nope.pem\n"},
		{"authn oauth2", "authn:\n  oauth2:\n    client_id: x\n"},
		{"rate_limit unknown field", "rate_limit:\n  domains:\n    - domain: a\n      bogus: 1\n"},
		{"rate_limit failure policy", "rate_limit:\n  domains:\n    - domain: a\n      failure_policy: maybe\n"},
		{"rate_limit algorithm", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          rate_limit: {unit: second, requests_per_unit: 1, algorithm: leaky}\n"},
		{"rate_limit unit", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          descriptors:\n            - key: j\n              rate_limit: {unit: fortnight, requests_per_unit: 1}\n"},
		{"rate_limit tier", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          rate_limit:\n            unit: second\n            requests_per_unit: 1\n            tiers:\n              free: {unit: eon, requests_per_unit: 1}\n"},
		{"rate_limit duplicate domain", "rate_limit:\n  domains:\n    - domain: a\n    - domain: a\n"},
		{"rate_limit headers", "rate_limit:\n  headers: draft\n"},
		{"webhooks scheme", "webhooks:\n  sources:\n    - name: a\n      scheme: paypal\n      secrets:\n        - ${LONG_SECRET}\n"},
		{"webhooks encoding", "webhooks:\n  sources:\n    - name: a\n      scheme: generic\n      secrets:\n        - ${LONG_SECRET}\n      generic: {signature_header: x-sig, encoding: base32}\n"},
		{"webhooks short secret", "webhooks:\n  sources:\n    - name: a\n      scheme: github\n      secrets:\n        - ${SHORT}\n"},
		{"webhooks no secret", "webhooks:\n  sources:\n    - name: a\n      scheme: github\n"},
		{"webhooks duplicate", "webhooks:\n  sources:\n    - {name: a, scheme: github, secrets: [\"${LONG_SECRET}\"]}\n    - {name: a, scheme: github, secrets: [\"${LONG_SECRET}\"]}\n"},
		{"webhooks replay status", "webhooks:\n  replay_status: 500\n  sources:\n    - name: a\n      scheme: github\n      secrets:\n        - ${LONG_SECRET}\n"},
		{"webhooks unknown field", "webhooks:\n  sources:\n    - name: a\n      schema: github\n"},
		{"authz permission", "authz:\n  roles:\n    user: {permissions: [\"orders\"]}\n"},
		{"envoy failure mode", "envoy:\n  ext_authz: {failure_mode: sometimes}\n"},
		{"envoy unavailable", "envoy:\n  rls: {unavailable: maybe}\n"},
		{"envoy unknown field", "envoy:\n  rls: {enable: true}\n"},
		{"envoy ratelimit file", "envoy:\n  ratelimit_config: rl.yaml\n"},
		{"envoy domain twice", "rate_limit:\n  domains:\n    - domain: edge\nenvoy:\n  ratelimit_config: rl-ok.yaml\n"},
		{"rate_limit lease algorithm", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          rate_limit:\n            unit: second\n            requests_per_unit: 10\n            algorithm: sliding_window\n            lease: {units: 5, ttl: 100ms}\n"},
		{"rate_limit lease units", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          rate_limit:\n            unit: second\n            requests_per_unit: 10\n            lease: {units: 50, ttl: 100ms}\n"},
		{"rate_limit lease ttl", "rate_limit:\n  domains:\n    - domain: a\n      descriptors:\n        - key: k\n          rate_limit:\n            unit: second\n            requests_per_unit: 10\n            lease:\n              units: 5\n              ttl: 2s\n"},
	}
	env := map[string]string{
		"WARDEN_PEPPER": "an-example-pepper-that-is-long-enough-0123456789",
		"SHORT":         "short",
		"LONG_SECRET":   "a-webhook-secret-that-is-long-enough",
		"IMPORTED_KEY":  "acme_live_0123456789abcdefghijklmn",
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"rl.yaml":    "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n",
		"rl-ok.yaml": "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var out strings.Builder
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("case%02d.yaml", i))
		if err := os.WriteFile(p, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		got := strings.ReplaceAll(buildDump(t, p, env), dir+"/", "")
		if !strings.Contains(got, "error: ") {
			t.Errorf("%s: no error; built:\n%s", c.name, got)
		}
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, "error: ") {
				fmt.Fprintf(&out, "%s: %s\n", c.name, l)
			}
		}
	}
	compareGolden(t, "config-errors.golden", out.String())
}
