package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/wardenhq/warden/fielderr"
)

// Scheme is how a sender signs its deliveries. The zero value is SchemeUnspecified, which no
// source may use.
type Scheme uint8

const (
	SchemeUnspecified Scheme = iota
	// StandardWebhooks (standardwebhooks.com): headers webhook-id, webhook-timestamp and
	// webhook-signature ("v1,<base64>" entries separated by spaces); signed content
	// "{id}.{timestamp}.{body}"; secrets "whsec_<base64>", the key being the decoded bytes.
	//
	// A webhook-id containing a dot is refused (BadFormat), a deliberate strictness: with a
	// dotted id the signed string can be split another way ("a.b" + T + "T2.x" also reads as
	// "a.b.T" + T2 + "x"), so a genuine signature would vouch for a different id and body.
	// Digit-only timestamps and dot-free ids make the split unique.
	StandardWebhooks
	// Stripe: Stripe-Signature "t=<unix>,v1=<hex>[,v1=<hex>...]" (v0 and other entries are
	// ignored); signed content "{t}.{body}"; the secret "whsec_..." is used as is, not
	// decoded. The event id is the body's top-level JSON "id", read only when replay
	// protection is on.
	Stripe
	// GitHub: X-Hub-Signature-256 "sha256=<hex>" over the body; X-GitHub-Delivery is the
	// event id. There is no timestamp, so tolerance does not apply.
	GitHub
	// Slack: X-Slack-Signature "v0=<hex>" over "v0:{X-Slack-Request-Timestamp}:{body}".
	Slack
	// Generic is configured by a GenericConfig.
	Generic

	numSchemes
)

var schemeNames = [numSchemes]string{"unspecified", "standard_webhooks", "stripe", "github", "slack", "generic"}

// String returns the scheme's config name (e.g. "standard_webhooks").
func (s Scheme) String() string {
	if s < numSchemes {
		return schemeNames[s]
	}
	return "invalid"
}

// ParseScheme returns the scheme named by its config name, as String returns it.
func ParseScheme(name string) (Scheme, bool) {
	for i := StandardWebhooks; i < numSchemes; i++ {
		if schemeNames[i] == name {
			return i, true
		}
	}
	return SchemeUnspecified, false
}

// UnmarshalText reads a scheme's config name (ParseScheme), so that a config file names it.
func (s *Scheme) UnmarshalText(b []byte) error {
	v, ok := ParseScheme(string(b))
	if !ok {
		return fmt.Errorf("unknown scheme %q: use standard_webhooks, stripe, github, slack or generic", b)
	}
	*s = v
	return nil
}

// Encoding is how the generic scheme writes a signature. The zero value is Hex.
type Encoding uint8

const (
	// Hex is lower- or upper-case hexadecimal (64 characters).
	Hex Encoding = iota
	// Base64 is standard base64 with padding (44 characters).
	Base64
)

// UnmarshalText reads an encoding's config name: hex (or empty) or base64.
func (e *Encoding) UnmarshalText(b []byte) error {
	switch string(b) {
	case "", "hex":
		*e = Hex
	case "base64":
		*e = Base64
	default:
		return fmt.Errorf("must be hex or base64, not %q", b)
	}
	return nil
}

// Defaults for Source fields left at zero.
const (
	DefaultTolerance  = 5 * time.Minute
	DefaultMaxPayload = 1 << 20
	// ReplayMargin is added to twice the tolerance for the default ReplayTTL. A delivery is
	// accepted while |now-timestamp| <= tolerance, a window 2*tolerance wide; its record
	// must outlive that whole window, plus a margin for clock skew between replicas.
	ReplayMargin = time.Minute
	// DefaultUntimedReplayTTL is the default ReplayTTL of a source whose scheme carries no
	// timestamp (GitHub, generic without a timestamp header): such a delivery can be replayed
	// whenever its record has expired, so the record is kept for a day.
	DefaultUntimedReplayTTL = 24 * time.Hour
	// MinSecretLen is the shortest secret, in bytes after decoding, a source may use.
	MinSecretLen = 24
)

// Source is one configured sender of webhooks. It is plain configuration: New validates it
// and keeps its own compiled copy. Its yaml tags are the schema of one item of Warden's
// webhooks.sources (Secrets are secret references the config loader resolves).
type Source struct {
	// Name identifies the source in Verify calls, replay keys and logs: 1 to 64 characters
	// of [A-Za-z0-9_.-].
	Name   string `yaml:"name"`
	Scheme Scheme `yaml:"scheme"`
	// Secrets are the active signing secrets, as resolved by the config loader. A delivery
	// verifies if it matches any of them (rotation). For StandardWebhooks each is
	// "whsec_<base64>" (the prefix is optional) and the key is the decoded bytes; for the
	// other schemes the key is the string's bytes as is. Every key must be at least
	// MinSecretLen bytes.
	Secrets []string `yaml:"secrets" config:"secret"`
	// Tolerance is how far the signed timestamp may be from now, in the past or in the
	// future; exactly Tolerance is accepted. Default DefaultTolerance.
	Tolerance time.Duration `yaml:"tolerance"`
	// MaxPayload is the largest body, in bytes, that is verified; larger ones are refused
	// with TooLarge before hashing. Default DefaultMaxPayload (1 MiB).
	MaxPayload int `yaml:"max_payload"`
	// Replay turns on replay protection: the first verified delivery of an event is
	// recorded in the Verifier's ReplayStore, later ones answer Duplicate.
	//
	// The replay key is the event id when the signature covers it (Standard Webhooks,
	// Stripe's body id, a generic template with {id}); otherwise it is derived from the
	// signature computed with the first secret (GitHub, whose X-GitHub-Delivery header is not
	// signed and could be changed by whoever replays a delivery; Slack; Stripe bodies
	// without an id).
	Replay bool `yaml:"replay"`
	// ReplayTTL is how long an event is remembered. Default 2*Tolerance + ReplayMargin, or
	// DefaultUntimedReplayTTL for a scheme without a timestamp. It must be longer than
	// 2*Tolerance.
	ReplayTTL time.Duration `yaml:"replay_ttl"`
	// Generic configures the Generic scheme; ignored by the others.
	Generic GenericConfig `yaml:"generic"`
}

// GenericConfig describes an HMAC-SHA256 scheme of one signature header.
type GenericConfig struct {
	// SignatureHeader names the header that carries the signature (required).
	SignatureHeader string `yaml:"signature_header"`
	// Prefix, when set, must start the signature header's value (e.g. "sha256=").
	Prefix string `yaml:"prefix"`
	// Encoding of the signature after Prefix. Default Hex.
	Encoding Encoding `yaml:"encoding"`
	// TimestampHeader, when set, names a required header of Unix seconds that is checked
	// against the tolerance; Template must then contain {timestamp}.
	TimestampHeader string `yaml:"timestamp_header"`
	// IDHeader, when set, names a required header whose value is the event id.
	IDHeader string `yaml:"id_header"`
	// Template is the signed string: literal text with the placeholders {id}, {timestamp}
	// and {body}; {body} must appear exactly once, the others at most once. Default "{body}".
	// A placeholder other than the last must be followed by literal text, whose first
	// character then separates it: an id containing that character is refused (BadFormat),
	// and after {timestamp} it must not be a digit. Otherwise the signed string could be
	// split differently and one signature would vouch for another id or body.
	Template string `yaml:"template"`
}

// key is one secret with a pool of keyed HMAC states: hmac.New costs allocations and two
// block hashes, Reset on a pooled state costs neither.
type key struct {
	pool sync.Pool // of *macState
}

type macState struct {
	h   hash.Hash
	buf []byte // scratch for the signed prefix and suffix
	sum [sha256.Size]byte
}

func newKey(secret []byte) *key {
	k := &key{}
	k.pool.New = func() any {
		return &macState{h: hmac.New(sha256.New, secret), buf: make([]byte, 0, 128)}
	}
	return k
}

// segment kinds of a compiled signed-string template.
const (
	segLiteral = iota
	segID
	segTimestamp
	segBody
)

type segment struct {
	kind int
	lit  string
}

// source is a validated Source. It must not be copied (the keys hold pools).
type source struct {
	name       string
	scheme     Scheme
	keys       []*key
	tolerance  time.Duration
	maxPayload int
	replay     bool
	replayTTL  time.Duration

	// generic scheme
	sigHeader, prefix, tsHeader, idHeader string
	encoding                              Encoding
	prefixSegs, suffixSegs                []segment
	idSigned                              bool
	idSep                                 byte // an id containing it is refused; 0: none
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// DecodeSecret returns the HMAC key of a secret for scheme: base64-decoded after an
// optional "whsec_" prefix for StandardWebhooks, the bytes as is for the others. It does
// not apply the MinSecretLen policy.
func DecodeSecret(scheme Scheme, secret string) ([]byte, error) {
	if scheme != StandardWebhooks {
		return []byte(secret), nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return nil, errors.New(`secret is not "whsec_" followed by standard base64`)
	}
	return b, nil
}

// compile validates src (at index i of the configuration) and builds its runtime form.
func compile(i int, src Source) (*source, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, sourceError(fmt.Sprintf("sources[%d]%s", i, field), src.Name, fmt.Sprintf(format, args...)))
	}
	if !validName(src.Name) {
		bad(".name", "name must be 1 to 64 characters of [A-Za-z0-9_.-]")
	}
	if src.Scheme == SchemeUnspecified || src.Scheme >= numSchemes {
		bad(".scheme", "unknown scheme")
	}
	s := &source{
		name: src.Name, scheme: src.Scheme, tolerance: src.Tolerance, maxPayload: src.MaxPayload,
		replay: src.Replay, replayTTL: src.ReplayTTL,
	}
	if s.tolerance == 0 {
		s.tolerance = DefaultTolerance
	}
	if s.tolerance < 0 {
		bad(".tolerance", "tolerance must not be negative")
	}
	if s.maxPayload == 0 {
		s.maxPayload = DefaultMaxPayload
	}
	if s.maxPayload < 0 {
		bad(".max_payload", "max payload must not be negative")
	}
	if len(src.Secrets) == 0 {
		bad(".secrets", "at least one secret is required")
	}
	for j, sec := range src.Secrets {
		field := fmt.Sprintf(".secrets[%d]", j)
		k, err := DecodeSecret(src.Scheme, sec)
		if err != nil {
			bad(field, "%v", err)
			continue
		}
		if len(k) < MinSecretLen {
			bad(field, "secret is %d bytes, need at least %d", len(k), MinSecretLen)
			continue
		}
		s.keys = append(s.keys, newKey(k))
	}
	timed := true
	switch src.Scheme {
	case StandardWebhooks:
		s.idSigned, s.idSep = true, '.'
	case Stripe:
		s.idSigned = true
	case GitHub:
		timed = false
	case Generic:
		timed = src.Generic.TimestampHeader != ""
		for _, e := range s.compileGeneric(src.Generic) {
			bad(".generic"+e.field, "%s", e.msg)
		}
	}
	if s.replayTTL == 0 {
		s.replayTTL = 2*s.tolerance + ReplayMargin
		if !timed {
			s.replayTTL = DefaultUntimedReplayTTL
		}
	}
	if s.replayTTL <= 2*s.tolerance && timed || s.replayTTL < time.Millisecond {
		bad(".replay_ttl", "replay TTL %v must be longer than twice the tolerance (%v)", s.replayTTL, 2*s.tolerance)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

type fieldErr struct{ field, msg string }

func (s *source) compileGeneric(g GenericConfig) []fieldErr {
	var errs []fieldErr
	if g.SignatureHeader == "" {
		errs = append(errs, fieldErr{".signature_header", "signature header is required"})
	}
	if g.Encoding != Hex && g.Encoding != Base64 {
		errs = append(errs, fieldErr{".encoding", "encoding must be hex or base64"})
	}
	s.sigHeader = strings.ToLower(g.SignatureHeader)
	s.prefix = g.Prefix
	s.encoding = g.Encoding
	s.tsHeader = strings.ToLower(g.TimestampHeader)
	s.idHeader = strings.ToLower(g.IDHeader)
	tmpl := g.Template
	if tmpl == "" {
		tmpl = "{body}"
	}
	segs, counts, err := parseTemplate(tmpl)
	if err != nil {
		return append(errs, fieldErr{".template", err.Error()})
	}
	switch {
	case counts[segBody] != 1:
		errs = append(errs, fieldErr{".template", "template must contain {body} exactly once"})
	case counts[segID] > 1 || counts[segTimestamp] > 1:
		errs = append(errs, fieldErr{".template", "{id} and {timestamp} may appear at most once"})
	case counts[segTimestamp] == 1 && s.tsHeader == "":
		errs = append(errs, fieldErr{".template", "{timestamp} needs a timestamp header"})
	case counts[segTimestamp] == 0 && s.tsHeader != "":
		errs = append(errs, fieldErr{".template", "a timestamp header needs {timestamp} in the template, or the timestamp is not signed"})
	case counts[segID] == 1 && s.idHeader == "":
		errs = append(errs, fieldErr{".template", "{id} needs an id header"})
	}
	for j, sg := range segs {
		if sg.kind == segBody {
			s.prefixSegs, s.suffixSegs = segs[:j], segs[j+1:]
		}
		if sg.kind == segLiteral || j == len(segs)-1 {
			continue
		}
		next := segs[j+1]
		switch {
		case next.kind != segLiteral:
			errs = append(errs, fieldErr{".template", "placeholders must be separated by literal text"})
		case sg.kind == segTimestamp && '0' <= next.lit[0] && next.lit[0] <= '9':
			errs = append(errs, fieldErr{".template", "{timestamp} must not be followed by a digit"})
		case sg.kind == segID:
			s.idSep = next.lit[0]
		}
	}
	s.idSigned = counts[segID] == 1
	return errs
}

// parseTemplate splits a template into segments and counts each placeholder kind.
func parseTemplate(t string) ([]segment, [4]int, error) {
	var (
		segs   []segment
		counts [4]int
	)
	for t != "" {
		open := strings.IndexByte(t, '{')
		if open < 0 {
			segs = append(segs, segment{kind: segLiteral, lit: t})
			break
		}
		if open > 0 {
			segs = append(segs, segment{kind: segLiteral, lit: t[:open]})
		}
		end := strings.IndexByte(t[open:], '}')
		if end < 0 {
			return nil, counts, errors.New("unclosed { in template")
		}
		var k int
		switch t[open : open+end+1] {
		case "{id}":
			k = segID
		case "{timestamp}":
			k = segTimestamp
		case "{body}":
			k = segBody
		default:
			return nil, counts, fmt.Errorf("unknown placeholder %q (want {id}, {timestamp} or {body})", t[open:open+end+1])
		}
		counts[k]++
		segs = append(segs, segment{kind: k})
		t = t[open+end+1:]
	}
	return segs, counts, nil
}

// sourceError is a mistake in a source: its path relative to the webhooks Config
// ("sources[2].secrets[0]"), with the source's name in the message. The message never
// contains a secret.
func sourceError(path, source, msg string) *fielderr.Error {
	if source == "" {
		return fielderr.Errorf(path, "%s", msg)
	}
	return fielderr.Errorf(path, "source %q: %s", source, msg)
}
