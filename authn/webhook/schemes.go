package webhook

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
)

// Bounds on what a parser accepts, so that work per delivery stays small whatever is sent.
const (
	maxHeaderLen  = 4096 // a signature header's length
	maxIDLen      = 256  // an event id's length
	maxCandidates = 8    // signatures of the scheme's version in one header
	maxTSDigits   = 12   // Unix seconds (10 digits until the year 2286)
)

// Header names, lower case (Headers implementations match case-insensitively).
const (
	hStandardID        = "webhook-id"
	hStandardTimestamp = "webhook-timestamp"
	hStandardSignature = "webhook-signature"
	hStripeSignature   = "stripe-signature"
	hGitHubSignature   = "x-hub-signature-256"
	hGitHubDelivery    = "x-github-delivery"
	hSlackSignature    = "x-slack-signature"
	hSlackTimestamp    = "x-slack-request-timestamp"
)

// delivery is what a scheme's parser reads from the headers. It lives on the stack.
type delivery struct {
	id   string // event id from a header; "" if none
	ts   string // timestamp exactly as received (digits only); "" if the scheme has none
	unix int64  // ts as Unix seconds
	sigs [maxCandidates][sha256.Size]byte
	n    int // number of candidate signatures in sigs
}

// parseTimestamp accepts 1 to maxTSDigits ASCII digits: no sign, no space, no fraction, so
// that a dot can never move between a timestamp and its neighbours in a signed string.
func parseTimestamp(s string) (int64, bool) {
	if s == "" || len(s) > maxTSDigits {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// decodeHex decodes exactly 64 hex digits into dst.
func decodeHex(s string, dst *[sha256.Size]byte) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	var src [2 * sha256.Size]byte
	copy(src[:], s)
	_, err := hex.Decode(dst[:], src[:])
	return err == nil
}

// b64Len is the length of a padded standard base64 SHA-256 digest.
const b64Len = (sha256.Size + 2) / 3 * 4

// decodeBase64 decodes a padded standard base64 digest of exactly 32 bytes into dst.
func decodeBase64(s string, dst *[sha256.Size]byte) bool {
	if len(s) != b64Len {
		return false
	}
	var src [b64Len]byte
	var out [b64Len]byte
	copy(src[:], s)
	n, err := base64.StdEncoding.Decode(out[:], src[:])
	if err != nil || n != sha256.Size {
		return false
	}
	copy(dst[:], out[:n])
	return true
}

func (d *delivery) add(ok bool) Reason {
	if !ok {
		return BadFormat
	}
	d.n++
	return OK
}

// parse reads the scheme's headers into d.
func (s *source) parse(h Headers, d *delivery) Reason {
	switch s.scheme {
	case StandardWebhooks:
		return parseStandard(h, d)
	case Stripe:
		return parseStripe(h, d)
	case GitHub:
		return parseGitHub(h, d)
	case Slack:
		return parseSlack(h, d)
	default:
		return s.parseGeneric(h, d)
	}
}

// validID reports whether id is 1 to maxIDLen bytes of printable ASCII: ids go into store
// keys, logs and responses.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// lookupID reads an event id header: required, bounded, and free of sep (the byte that
// follows the id in the signed string; 0 for none).
func lookupID(h Headers, name string, sep byte, d *delivery) Reason {
	id, ok := h.Lookup(name)
	if !ok || id == "" {
		return MissingHeader
	}
	if !validID(id) || sep != 0 && strings.IndexByte(id, sep) >= 0 {
		return BadFormat
	}
	d.id = id
	return OK
}

// lookupTimestamp reads a timestamp header: required, digits only.
func lookupTimestamp(h Headers, name string, d *delivery) Reason {
	ts, ok := h.Lookup(name)
	if !ok || ts == "" {
		return MissingHeader
	}
	unix, ok := parseTimestamp(ts)
	if !ok {
		return BadFormat
	}
	d.ts, d.unix = ts, unix
	return OK
}

// lookupSignature reads a required signature header, bounded in length.
func lookupSignature(h Headers, name string) (string, Reason) {
	v, ok := h.Lookup(name)
	if !ok || v == "" {
		return "", MissingHeader
	}
	if len(v) > maxHeaderLen {
		return "", BadFormat
	}
	return v, OK
}

func parseStandard(h Headers, d *delivery) Reason {
	if r := lookupID(h, hStandardID, '.', d); r != OK {
		return r
	}
	if r := lookupTimestamp(h, hStandardTimestamp, d); r != OK {
		return r
	}
	v, r := lookupSignature(h, hStandardSignature)
	if r != OK {
		return r
	}
	return parseStandardSignatures(v, d)
}

// parseStandardSignatures reads space-separated "version,signature" entries; entries of
// versions other than v1 are skipped, a malformed v1 entry is BadFormat.
func parseStandardSignatures(v string, d *delivery) Reason {
	for v != "" {
		var f string
		f, v, _ = strings.Cut(v, " ")
		if f == "" {
			continue
		}
		ver, sig, ok := strings.Cut(f, ",")
		if !ok {
			return BadFormat
		}
		if ver != "v1" {
			continue
		}
		if d.n == maxCandidates {
			return BadFormat
		}
		if r := d.add(decodeBase64(sig, &d.sigs[d.n])); r != OK {
			return r
		}
	}
	if d.n == 0 {
		return NoMatchingSignature
	}
	return OK
}

// parseStripe reads "t=<unix>,v1=<hex>,...": exactly one t, any number (up to
// maxCandidates) of v1, other keys (v0, future schemes) skipped.
func parseStripe(h Headers, d *delivery) Reason {
	v, r := lookupSignature(h, hStripeSignature)
	if r != OK {
		return r
	}
	return parseStripeHeader(v, d)
}

func parseStripeHeader(v string, d *delivery) Reason {
	ts := ""
	for v != "" {
		var f string
		f, v, _ = strings.Cut(v, ",")
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return BadFormat
		}
		switch k {
		case "t":
			if ts != "" {
				return BadFormat
			}
			if ts = val; ts == "" {
				return BadFormat
			}
		case "v1":
			if d.n == maxCandidates {
				return BadFormat
			}
			if r := d.add(decodeHex(val, &d.sigs[d.n])); r != OK {
				return r
			}
		}
	}
	unix, ok := parseTimestamp(ts)
	if !ok {
		return BadFormat
	}
	d.ts, d.unix = ts, unix
	if d.n == 0 {
		return NoMatchingSignature
	}
	return OK
}

// parseGitHub reads "sha256=<hex>"; X-GitHub-Delivery is optional.
func parseGitHub(h Headers, d *delivery) Reason {
	v, r := lookupSignature(h, hGitHubSignature)
	if r != OK {
		return r
	}
	if r := parsePrefixed(v, "sha256=", Hex, d); r != OK {
		return r
	}
	if id, ok := h.Lookup(hGitHubDelivery); ok && id != "" {
		if !validID(id) {
			return BadFormat
		}
		d.id = id
	}
	return OK
}

func parseSlack(h Headers, d *delivery) Reason {
	v, r := lookupSignature(h, hSlackSignature)
	if r != OK {
		return r
	}
	if r := lookupTimestamp(h, hSlackTimestamp, d); r != OK {
		return r
	}
	return parsePrefixed(v, "v0=", Hex, d)
}

// parsePrefixed reads one signature that must start with prefix.
func parsePrefixed(v, prefix string, enc Encoding, d *delivery) Reason {
	sig, ok := strings.CutPrefix(v, prefix)
	if !ok {
		return BadFormat
	}
	if enc == Base64 {
		return d.add(decodeBase64(sig, &d.sigs[d.n]))
	}
	return d.add(decodeHex(sig, &d.sigs[d.n]))
}

func (s *source) parseGeneric(h Headers, d *delivery) Reason {
	v, r := lookupSignature(h, s.sigHeader)
	if r != OK {
		return r
	}
	if s.tsHeader != "" {
		if r := lookupTimestamp(h, s.tsHeader, d); r != OK {
			return r
		}
	}
	if s.idHeader != "" {
		if r := lookupID(h, s.idHeader, s.idSep, d); r != OK {
			return r
		}
	}
	return parsePrefixed(v, s.prefix, s.encoding, d)
}

// appendPrefix appends what the scheme signs before the body.
func (s *source) appendPrefix(b []byte, d *delivery) []byte {
	switch s.scheme {
	case StandardWebhooks:
		b = append(b, d.id...)
		b = append(b, '.')
		b = append(b, d.ts...)
		return append(b, '.')
	case Stripe:
		b = append(b, d.ts...)
		return append(b, '.')
	case GitHub:
		return b
	case Slack:
		b = append(b, "v0:"...)
		b = append(b, d.ts...)
		return append(b, ':')
	default:
		return appendSegments(b, s.prefixSegs, d)
	}
}

// appendSuffix appends what the scheme signs after the body (only a generic template can).
func (s *source) appendSuffix(b []byte, d *delivery) []byte {
	if s.scheme != Generic {
		return b
	}
	return appendSegments(b, s.suffixSegs, d)
}

func appendSegments(b []byte, segs []segment, d *delivery) []byte {
	for _, sg := range segs {
		switch sg.kind {
		case segLiteral:
			b = append(b, sg.lit...)
		case segID:
			b = append(b, d.id...)
		case segTimestamp:
			b = append(b, d.ts...)
		}
	}
	return b
}

// mac computes HMAC-SHA256 of the scheme's signed content under k into sum.
func (s *source) mac(k *key, d *delivery, body []byte, sum *[sha256.Size]byte) {
	st := k.pool.Get().(*macState)
	st.h.Reset()
	st.buf = s.appendPrefix(st.buf[:0], d)
	st.h.Write(st.buf)
	st.h.Write(body)
	if st.buf = s.appendSuffix(st.buf[:0], d); len(st.buf) > 0 {
		st.h.Write(st.buf)
	}
	st.h.Sum(st.sum[:0])
	*sum = st.sum
	if cap(st.buf) <= 4*maxHeaderLen { // don't keep a buffer grown by an outsized id
		k.pool.Put(st)
	}
}

func formatTimestamp(unix int64) string { return strconv.FormatInt(unix, 10) }
