// Package testcred makes real credentials for Warden's tests and benchmarks: API keys with
// the config entry that stores their digest, and an ES256 JWT issuer with its JWKS file. It
// uses the same code paths as production (authn.NewAPIKey, authn.Pepper), so what it makes is
// what a deployment would see.
//
// It knows nothing of the server: callers put the entries into their config files.
package testcred

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/wardenhq/warden/authn"
)

// Key is an API key and what the config's static key list stores for it.
type Key struct {
	// Key is the whole secret key, sk-live-… or sk-test-….
	Key string
	// ID is the key id; Digest is hex HMAC-SHA256(pepper, secret).
	ID, Digest string
}

// NewKey makes a key of env under pepper.
func NewKey(pepper string, env authn.Environment) (Key, error) {
	p, err := authn.NewPepper([]byte(pepper))
	if err != nil {
		return Key{}, err
	}
	key, parsed, err := authn.NewAPIKey(env)
	if err != nil {
		return Key{}, err
	}
	d := p.Digest(parsed.Secret)
	return Key{Key: key, ID: parsed.ID, Digest: hex.EncodeToString(d[:])}, nil
}

// Entry is the key's line in authn.api_keys.keys (a YAML flow mapping).
func (k Key) Entry(env, owner, tenant, roles string) string {
	return fmt.Sprintf("{id: %s, env: %s, digest: %s, owner: %s, tenant: %s, roles: [%s]}", k.ID, env, k.Digest, owner, tenant, roles)
}

// Issuer signs ES256 JWTs with one key, published with kid "k1".
type Issuer struct {
	key  *ecdsa.PrivateKey
	jwks string
}

// JWKS is the issuer's public key set, as JSON.
func (is *Issuer) JWKS() string { return is.jwks }

// NewIssuer makes an issuer and writes its JWKS to jwksPath (unless it is empty).
func NewIssuer(jwksPath string) (*Issuer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	raw := pub.Bytes() // 0x04 || X || Y
	b64 := base64.RawURLEncoding.EncodeToString
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig","x":"%s","y":"%s"}]}`,
		b64(raw[1:33]), b64(raw[33:]))
	if jwksPath != "" {
		if err := os.WriteFile(jwksPath, []byte(jwks), 0o600); err != nil {
			return nil, err
		}
	}
	return &Issuer{key: k, jwks: jwks}, nil
}

// Token signs claims as a compact JWS (raw r||s signature, as RFC 7518 requires).
func (is *Issuer) Token(claims map[string]any) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	h, err := json.Marshal(map[string]any{"alg": "ES256", "kid": "k1", "typ": "JWT"})
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := b64(h) + "." + b64(c)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, is.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + b64(sig), nil
}
