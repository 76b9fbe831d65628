package authn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Imported API keys
//
// A deployment that already issued keys of its own format brings them in as imported keys:
// any printable string of a configured format (ImportedFormat: a prefix or none, length
// bounds), which Warden did not generate and cannot checksum. An imported key is stored like
// a native one, only as HMAC-SHA256(pepper, key) over the whole key, and is looked up by that
// digest: its id is derived from the digest (ImportedKeyID), so a lookup is one map or Redis
// read, never a scan, and the record then compares the whole digest in constant time. The id
// is "i" followed by 11 base62 characters (64 bits of the digest); it is public like a native
// key's id (logs, revocation, rotation) and, the pepper being secret, tells nothing of the
// key.

// MaxImportedKeyLen bounds an imported key's length, whatever the format says: its digest is
// computed through a stack buffer of this size.
const MaxImportedKeyLen = 512

// importedIDMark starts every imported key's id.
const importedIDMark = 'i'

// ImportedFormat is one format of imported keys a deployment accepts.
type ImportedFormat struct {
	// Prefix starts every key of the format ("acme_live_"); empty means none. A key is
	// matched against the formats in order: the first whose prefix and length fit wins.
	Prefix string `yaml:"prefix"`
	// Env is the environment of the format's keys. EnvUnspecified: the environment given
	// at import (a format without a prefix often carries both).
	Env Environment `yaml:"environment"`
	// MinLen and MaxLen bound the whole key's length, prefix included; at least 16
	// characters must follow the prefix. Defaults: the prefix's length + 16 (at least 20),
	// and MaxImportedKeyLen.
	MinLen int `yaml:"min_length"`
	MaxLen int `yaml:"max_length"`
}

func (f *ImportedFormat) setDefaults() error {
	if f.MinLen <= 0 {
		f.MinLen = max(20, len(f.Prefix)+16)
	}
	if f.MaxLen <= 0 {
		f.MaxLen = MaxImportedKeyLen
	}
	switch {
	case f.MaxLen > MaxImportedKeyLen:
		return fmt.Errorf("max length %d is above %d", f.MaxLen, MaxImportedKeyLen)
	case f.MinLen > f.MaxLen:
		return fmt.Errorf("min length %d is above max length %d", f.MinLen, f.MaxLen)
	case f.MinLen < len(f.Prefix)+16:
		return fmt.Errorf("min length %d leaves fewer than 16 characters after the prefix", f.MinLen)
	case !validKeyChars(f.Prefix):
		return fmt.Errorf("prefix %q: want RFC 7235 token68 characters", f.Prefix)
	}
	return nil
}

// match reports whether key has the format: its prefix, its length bounds, and token68
// characters (what a header can carry). It does not allocate.
func (f *ImportedFormat) match(key string) bool {
	return len(key) >= f.MinLen && len(key) <= f.MaxLen && strings.HasPrefix(key, f.Prefix) && validKeyChars(key)
}

// validKeyChars reports whether s holds only the characters of RFC 7235 token68 (without the
// trailing "=" padding rule): letters, digits, "-", ".", "_", "~", "+", "/", "=".
func validKeyChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=') {
			return false
		}
	}
	return true
}

// ErrImportedFormat is returned when a key to import matches no configured format.
var ErrImportedFormat = importError("the key matches no configured imported key format")

// importError is a key to import that is refused for what it is (its format, environment or
// record), not because the store failed. Its text never holds the key.
type importError string

func (e importError) Error() string { return "authn: import API key: " + string(e) }

// IsImportError reports whether err refuses a key to import for what it is (see
// APIKeys.Import), rather than reporting a store failure.
func IsImportError(err error) bool {
	var ie importError
	return errors.As(err, &ie)
}

// ErrKeyExists is returned by Import for a key that is already stored.
var ErrKeyExists = errors.New("authn: this API key is already stored")

// importedIDLen is the length of an imported key's id: the mark and 11 base62 digits.
const importedIDLen = 12

// importedID writes the id of the imported key whose digest is d into dst.
func importedID(dst *[importedIDLen]byte, d *Digest) {
	n := binary.BigEndian.Uint64(d[:8])
	for i := importedIDLen - 1; i > 0; i-- {
		dst[i] = base62Alphabet[n%62]
		n /= 62
	}
	dst[0] = importedIDMark
}

// ImportedKeyID returns the id under which the imported key with digest d is stored.
func ImportedKeyID(d Digest) string {
	var b [importedIDLen]byte
	importedID(&b, &d)
	return string(b[:])
}

// DigestImported returns HMAC-SHA256(pepper, key) over a whole imported key (at most
// MaxImportedKeyLen bytes; a longer one gets the zero digest, which matches nothing). It does
// not allocate.
func (p *Pepper) DigestImported(key string) Digest {
	var inner [hmacBlockSize + MaxImportedKeyLen]byte
	return p.hmac(inner[:], key)
}
