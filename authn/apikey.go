package authn

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// API key format
//
// An API key is 49 ASCII bytes:
//
//		sk-live-KKKKKKKKKKKK_SSSSSSSSSSSSSSSSSSSSSSCCCCCC
//		|prefix||  id (12) | |   secret (22)      ||sum|
//
//	  - prefix: "sk-live-" or "sk-test-" (8 bytes), the environment.
//	  - id: 12 base62 characters (~71 bits, crypto/rand), the public, non-secret key id used to
//	    look the key up. It appears in logs and in Principal.CredentialID.
//	  - "_": a separator, so that id and secret are visible to humans.
//	  - secret: 22 base62 characters (~131 bits, crypto/rand).
//	  - checksum: 6 base62 characters encoding, most significant digit first and zero-padded,
//	    the big-endian uint32 made of the first 4 bytes of SHA-256 over the first 42 bytes of
//	    the key (prefix, id, "_" and secret).
//
// Base62 is the alphabet 0-9, A-Z, a-z in that order. The checksum is not a secret: it lets
// Warden refuse mistyped and made-up keys without a store lookup.
//
// Only HMAC-SHA256(pepper, secret) is stored; the pepper is a server secret.
const (
	APIKeyLen       = 49
	apiKeyPrefixLen = 8
	apiKeyIDLen     = 12
	apiKeySecretLen = 22
	apiKeySumLen    = 6
	apiKeySepPos    = apiKeyPrefixLen + apiKeyIDLen     // 20
	apiKeySecretPos = apiKeySepPos + 1                  // 21
	apiKeySumPos    = apiKeySecretPos + apiKeySecretLen // 43
	apiKeyBodyLen   = apiKeySumPos                      // bytes covered by the checksum
	base62Alphabet  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	livePrefix      = "sk-live-"
	testPrefix      = "sk-test-"
	digestLen       = sha256.Size
	hmacBlockSize   = sha256.BlockSize
)

// Environment is the deployment an API key belongs to. A deployment accepts only keys of its
// configured environment. The zero value is EnvUnspecified, which no key has.
type Environment uint8

const (
	EnvUnspecified Environment = iota
	EnvLive                    // sk-live- keys
	EnvTest                    // sk-test- keys
)

// String returns "live", "test" or "unspecified".
func (e Environment) String() string {
	switch e {
	case EnvLive:
		return "live"
	case EnvTest:
		return "test"
	}
	return "unspecified"
}

// ParseEnvironment parses "live" or "test".
func ParseEnvironment(s string) (Environment, error) {
	switch s {
	case "live":
		return EnvLive, nil
	case "test":
		return EnvTest, nil
	}
	return EnvUnspecified, fmt.Errorf("environment %q: want live or test", s)
}

// UnmarshalText reads an environment's name (ParseEnvironment); empty is EnvUnspecified.
func (e *Environment) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*e = EnvUnspecified
		return nil
	}
	v, err := ParseEnvironment(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// ParsedAPIKey is an API key split into its parts. ID and Secret are substrings of the
// parsed key: parsing does not allocate.
type ParsedAPIKey struct {
	Env    Environment
	ID     string
	Secret string
}

// ErrMalformedAPIKey is returned by ParseAPIKey for anything that is not a well-formed key
// with a correct checksum. It deliberately does not say which part is wrong.
var ErrMalformedAPIKey = errors.New("authn: malformed API key")

// ParseAPIKey checks the format and checksum of key and splits it. It never allocates and
// runs in constant time with respect to nothing secret (the checksum is public).
func ParseAPIKey(key string) (ParsedAPIKey, error) {
	if len(key) != APIKeyLen {
		return ParsedAPIKey{}, ErrMalformedAPIKey
	}
	var env Environment
	switch key[:apiKeyPrefixLen] {
	case livePrefix:
		env = EnvLive
	case testPrefix:
		env = EnvTest
	default:
		return ParsedAPIKey{}, ErrMalformedAPIKey
	}
	if key[apiKeySepPos] != '_' {
		return ParsedAPIKey{}, ErrMalformedAPIKey
	}
	// One table lookup per byte, the bytes not base62 found at once by the sign of their OR.
	var bad int8
	for i := apiKeyPrefixLen; i < apiKeySepPos; i++ {
		bad |= base62Values[key[i]]
	}
	for i := apiKeySecretPos; i < APIKeyLen; i++ {
		bad |= base62Values[key[i]]
	}
	if bad < 0 {
		return ParsedAPIKey{}, ErrMalformedAPIKey
	}
	var sum uint64
	for i := apiKeySumPos; i < APIKeyLen; i++ {
		sum = sum*62 + uint64(base62Value(key[i]))
	}
	if sum != uint64(apiKeyChecksum(key[:apiKeyBodyLen])) {
		return ParsedAPIKey{}, ErrMalformedAPIKey
	}
	return ParsedAPIKey{
		Env:    env,
		ID:     key[apiKeyPrefixLen:apiKeySepPos],
		Secret: key[apiKeySecretPos:apiKeySumPos],
	}, nil
}

// LooksLikeAPIKey reports whether tok starts with an API key prefix. It is how a bearer token
// is classified; the full check is ParseAPIKey.
func LooksLikeAPIKey(tok string) bool {
	return strings.HasPrefix(tok, livePrefix) || strings.HasPrefix(tok, testPrefix)
}

// ValidAPIKeyID reports whether id has the form of a key id (12 base62 characters).
func ValidAPIKeyID(id string) bool {
	if len(id) != apiKeyIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if base62Value(id[i]) < 0 {
			return false
		}
	}
	return true
}

// base62Value is c's value in base62Alphabet, or -1.
func base62Value(c byte) int { return int(base62Values[c]) }

// base62Values maps a byte to its value in base62Alphabet, or -1.
var base62Values = func() (t [256]int8) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(base62Alphabet); i++ {
		t[base62Alphabet[i]] = int8(i)
	}
	return t
}()

// apiKeyChecksum hashes body through a stack buffer, so that it does not allocate.
func apiKeyChecksum(body string) uint32 {
	var buf [apiKeyBodyLen]byte
	n := copy(buf[:], body)
	d := sha256.Sum256(buf[:n])
	return binary.BigEndian.Uint32(d[:4])
}

// NewAPIKey generates a key of environment env with a fresh id and secret from crypto/rand.
// It returns the plaintext key (to show once) and its parsed form.
func NewAPIKey(env Environment) (string, ParsedAPIKey, error) {
	var prefix string
	switch env {
	case EnvLive:
		prefix = livePrefix
	case EnvTest:
		prefix = testPrefix
	default:
		return "", ParsedAPIKey{}, fmt.Errorf("authn: new API key: environment %v", env)
	}
	var id, secret [apiKeySecretLen]byte
	if err := randomBase62(id[:apiKeyIDLen]); err != nil {
		return "", ParsedAPIKey{}, err
	}
	if err := randomBase62(secret[:]); err != nil {
		return "", ParsedAPIKey{}, err
	}
	key := formatAPIKey(prefix, string(id[:apiKeyIDLen]), string(secret[:]))
	p, err := ParseAPIKey(key)
	if err != nil {
		return "", ParsedAPIKey{}, fmt.Errorf("authn: generated key does not parse: %w", err)
	}
	return key, p, nil
}

// formatAPIKey assembles a key from its parts and appends the checksum.
func formatAPIKey(prefix, id, secret string) string {
	b := make([]byte, APIKeyLen)
	copy(b, prefix)
	copy(b[apiKeyPrefixLen:], id)
	b[apiKeySepPos] = '_'
	copy(b[apiKeySecretPos:], secret)
	sum := uint64(apiKeyChecksum(string(b[:apiKeyBodyLen])))
	for i := APIKeyLen - 1; i >= apiKeySumPos; i-- {
		b[i] = base62Alphabet[sum%62]
		sum /= 62
	}
	return string(b)
}

// randomBase62 fills dst with uniformly random base62 characters (rejection sampling of
// crypto/rand bytes, so there is no modulo bias).
func randomBase62(dst []byte) error {
	var buf [64]byte
	i := 0
	for i < len(dst) {
		if _, err := rand.Read(buf[:]); err != nil {
			return fmt.Errorf("authn: random: %w", err)
		}
		for _, c := range buf {
			if c >= 248 { // 248 = 4*62: keep only bytes that map uniformly
				continue
			}
			dst[i] = base62Alphabet[c%62]
			i++
			if i == len(dst) {
				break
			}
		}
	}
	return nil
}

// Pepper is the server secret that API key digests are keyed with. It holds the HMAC-SHA256
// inner and outer pad blocks, precomputed so that a digest costs two SHA-256 sums and no
// allocation. The zero value is not usable: build one with NewPepper. A Pepper is immutable
// and safe for concurrent use. It never prints its contents.
type Pepper struct {
	ipad, opad [hmacBlockSize]byte
	set        bool
}

// NewPepper makes a Pepper from secret bytes (which cmd reads from the environment or a
// file). It needs at least 32 bytes.
func NewPepper(secret []byte) (*Pepper, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("authn: pepper has %d bytes, want at least 32", len(secret))
	}
	key := secret
	if len(key) > hmacBlockSize {
		d := sha256.Sum256(key)
		key = d[:]
	}
	p := &Pepper{set: true}
	copy(p.ipad[:], key)
	copy(p.opad[:], key)
	for i := range p.ipad {
		p.ipad[i] ^= 0x36
		p.opad[i] ^= 0x5c
	}
	return p, nil
}

// String hides the pepper.
func (p *Pepper) String() string { return "authn.Pepper(redacted)" }

// GoString hides the pepper.
func (p *Pepper) GoString() string { return p.String() }

// Digest returns HMAC-SHA256(pepper, secret). secret is the secret part of a key (see
// ParsedAPIKey.Secret), at most 64 bytes. It does not allocate.
func (p *Pepper) Digest(secret string) [digestLen]byte {
	var inner [hmacBlockSize + 64]byte
	return p.hmac(inner[:], secret)
}

// hmac returns HMAC-SHA256(pepper, msg), using inner (the pad block and room for msg) as its
// buffer, or the zero digest when msg does not fit in it.
func (p *Pepper) hmac(inner []byte, msg string) [digestLen]byte {
	copy(inner, p.ipad[:])
	n := copy(inner[hmacBlockSize:], msg)
	if n < len(msg) {
		// Longer than any key: never equal to a stored digest.
		return [digestLen]byte{}
	}
	ih := sha256.Sum256(inner[:hmacBlockSize+n])
	var outer [hmacBlockSize + digestLen]byte
	copy(outer[:], p.opad[:])
	copy(outer[hmacBlockSize:], ih[:])
	return sha256.Sum256(outer[:])
}

// DigestAPIKey parses key and returns the digest of its secret: what a KeyRecord or a
// bootstrap entry stores.
func (p *Pepper) DigestAPIKey(key string) (ParsedAPIKey, [digestLen]byte, error) {
	pk, err := ParseAPIKey(key)
	if err != nil {
		return ParsedAPIKey{}, [digestLen]byte{}, err
	}
	return pk, p.Digest(pk.Secret), nil
}

// digestEqual compares in constant time.
func digestEqual(a, b *[digestLen]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
