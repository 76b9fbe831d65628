package service

import "strconv"

// Default bounds on the headers of one request (http.headers, credentials.headers, a
// webhook's headers), above Envoy's own defaults (max_headers_count 100,
// max_request_headers_kb 60) so that whatever Envoy accepts, Warden does too.
const (
	DefaultMaxHeaders     = 256
	DefaultMaxHeaderBytes = 128 << 10
)

// headerLimits bound the headers of one request.
type headerLimits struct {
	count, bytes int
}

// check refuses a header map that is too large, or with a name or value holding NUL, CR or
// LF (which no HTTP/1 or HTTP/2 message can carry: they can only be forged, to split a header
// downstream). It runs before any other work on the request.
func (l headerLimits) check(field string, h map[string]string) error {
	if len(h) == 0 {
		return nil
	}
	if len(h) > l.count {
		return invalidArgument(field, "at most "+strconv.Itoa(l.count)+" headers")
	}
	total := 0
	for k, v := range h {
		total += len(k) + len(v)
		if hasCtl(k) || hasCtl(v) {
			return invalidArgument(field, "a header name or value contains NUL, CR or LF")
		}
	}
	if total > l.bytes {
		return invalidArgument(field, "at most "+strconv.Itoa(l.bytes)+" bytes of header names and values")
	}
	return nil
}

// hasCtl reports whether s holds NUL, CR or LF.
func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= '\r' && (c == 0 || c == '\r' || c == '\n') {
			return true
		}
	}
	return false
}
