package clients

import (
	"net/http"
	"strings"

	"github.com/wardenhq/warden/idheader"
)

// Header names the middleware and the interceptors convert on every request (request headers
// to Warden's lower case, Warden's response headers to the end client's canonical or lower
// case) are looked up in these tables, built once, so that the common ones cost no
// allocation; others are converted as usual.
var (
	lowerNames     = map[string]string{}
	canonicalNames = map[string]string{}
)

func init() {
	for _, n := range []string{
		// Warden's response headers.
		"RateLimit", "RateLimit-Policy", "Retry-After", "WWW-Authenticate",
		"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
		// Common request headers.
		"Accept", "Accept-Encoding", "Accept-Language", "Authorization", "Cache-Control",
		"Connection", "Content-Length", "Content-Type", "Cookie", "Forwarded", "Host",
		"Origin", "Referer", "Traceparent", "Tracestate", "User-Agent", "X-Api-Key",
		"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
		"X-Request-Id", "Baggage", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-Dest",
		"If-None-Match", "If-Modified-Since", "Priority", "Te", "Upgrade-Insecure-Requests",
	} {
		addName(n)
	}
	// Warden's identity headers (upstream_headers and upstream_headers_to_remove).
	for _, n := range idheader.Names() {
		addName(n)
	}
}

func addName(n string) {
	lower, canon := strings.ToLower(n), http.CanonicalHeaderKey(n)
	for _, form := range []string{n, lower, canon} {
		lowerNames[form] = lower
		canonicalNames[form] = canon
	}
}

// lowerName is name in lower case.
func lowerName(name string) string {
	if l, ok := lowerNames[name]; ok {
		return l
	}
	return strings.ToLower(name)
}

// canonicalName is name in net/http's canonical form.
func canonicalName(name string) string {
	if c, ok := canonicalNames[name]; ok {
		return c
	}
	return http.CanonicalHeaderKey(name)
}
