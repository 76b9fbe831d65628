package webhook

import "strings"

// Headers looks up a request header by name. Names are passed in lower case; implementations
// must match them case-insensitively. A header that is absent, or ambiguous (present more
// than once with different values), reports ok=false.
type Headers interface {
	Lookup(name string) (value string, ok bool)
}

// Map is a Headers over a plain map, as gRPC metadata or a proto map<string, string> gives
// them. Lookup tries the exact name first, then a case-insensitive scan. It does not allocate.
type Map map[string]string

// Lookup implements Headers.
func (m Map) Lookup(name string) (string, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	var (
		found bool
		val   string
	)
	for k, v := range m {
		if !strings.EqualFold(k, name) {
			continue
		}
		if found && v != val {
			return "", false
		}
		found, val = true, v
	}
	return val, found
}

// HTTPHeader is a Headers over an http.Header (convert with webhook.HTTPHeader(r.Header)).
// A header with several different values counts as absent.
type HTTPHeader map[string][]string

// Lookup implements Headers.
func (h HTTPHeader) Lookup(name string) (string, bool) {
	var (
		found bool
		val   string
	)
	for k, vs := range h {
		if !strings.EqualFold(k, name) {
			continue
		}
		for _, v := range vs {
			if found && v != val {
				return "", false
			}
			found, val = true, v
		}
	}
	return val, found
}

// HeaderFunc adapts a function to Headers. The function must match names case-insensitively.
type HeaderFunc func(name string) (string, bool)

// Lookup implements Headers.
func (f HeaderFunc) Lookup(name string) (string, bool) { return f(name) }
