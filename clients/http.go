package clients

import (
	"bytes"
	"encoding/pem"
	"io"
	"net/http"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Middleware returns net/http middleware that asks Warden about every request before next runs,
// with one Check (or, with an AuthnCache, from a cached decision with at most one CheckRateLimit).
//
// It sends the method, the path (escaped, without the query), the host and the headers with
// lower-cased names (repeated values joined with ","), the body only with WithBody (up to its cap;
// a longer body is answered 413 without asking Warden), and as credentials the credential headers
// (WithCredentialHeaders) and the client's TLS certificate (PEM, leaf only). WithRequestActions
// sees the request as "METHOD /path" and the *http.Request.
//
// Warden's response headers (WWW-Authenticate, the rate-limit headers of the flavour
// WithRateLimitHeaders lets through, Retry-After) are set on the response, allowed or not. A denial
// is answered with Warden's status (401, 403, 404 or 429; 400 and 413 for malformed requests; 403
// otherwise) and a small JSON body, {"error":{"code":429,"message":"rate limited"}}, whose message
// stays generic. When Warden cannot decide, the answer is 503 with Retry-After (or 504 when the
// deadline passed) unless WithAuthFailurePolicy(FailOpen) lets the request through without a
// principal, marked FailedOpenFrom. On allow, next gets a request whose context carries the
// principal (PrincipalFrom) and whose headers carry Warden's upstream headers (replacing any the
// client sent under the same names) without the ones Warden removes; the caller's request and its
// headers are not modified. The client's own identity headers (every x-warden-* name, any case)
// never reach next, whatever the outcome: allowed, served from the cache, failed open or skipped.
// Paths in the skip list (WithSkip; none by default) are not checked.
func Middleware(c *Client, opts ...HandlerOption) func(http.Handler) http.Handler {
	g := newGuard(c, append([]HandlerOption{WithSkip()}, opts...))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if g.cfg.skipped(r.URL.Path) {
				next.ServeHTTP(w, withoutIdentity(r, &g.cfg.identity))
				return
			}
			var body []byte
			if g.cfg.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
				var err error
				body, err = io.ReadAll(io.LimitReader(r.Body, g.cfg.maxBody+1))
				if err != nil {
					writeJSONError(w, http.StatusBadRequest, "malformed request")
					return
				}
				if int64(len(body)) > g.cfg.maxBody {
					writeJSONError(w, http.StatusRequestEntityTooLarge, "request body too large")
					return
				}
				r.Body = readCloser{Reader: bytes.NewReader(body), Closer: r.Body}
			}
			req := &request{
				hr:    r,
				path:  r.URL.EscapedPath(),
				body:  body,
				msg:   r,
				creds: &wardenv1.Credentials{Headers: credentialHeaders(&g.cfg, r.Header, true), PeerCertificate: httpPeerCertificate(r)},
			}
			ctx := r.Context()
			o, err := g.decide(ctx, req)
			if err != nil {
				st := http.StatusServiceUnavailable
				switch status.Code(err) {
				case codes.Unavailable:
					w.Header().Set("Retry-After", "1")
				case codes.DeadlineExceeded:
					st = http.StatusGatewayTimeout
				case codes.InvalidArgument:
					st = http.StatusBadRequest
				case codes.Internal:
					st = http.StatusInternalServerError
				}
				writeJSONError(w, st, status.Convert(err).Message())
				return
			}
			h := w.Header()
			for _, x := range o.responseHeaders {
				if !g.cfg.rateLimitHeaders.passes(x.GetName()) {
					continue
				}
				k := canonicalName(x.GetName())
				h[k] = append(h[k], x.GetValue())
			}
			if !o.allowed {
				st, msg := httpDenial(o.httpStatus)
				if st == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "" {
					h.Set("WWW-Authenticate", "Bearer")
				}
				writeJSONError(w, st, msg)
				return
			}
			r2 := r.WithContext(handlerContext(ctx, &o))
			if len(o.upstreamHeaders) > 0 || len(o.remove) > 0 || hasIdentity(r.Header, &g.cfg.identity) {
				r2.Header = r.Header.Clone()
				for _, n := range o.remove {
					delete(r2.Header, g.canonicalName(n))
				}
				deleteIdentity(r2.Header, &g.cfg.identity)
				vals := make([]string, len(o.upstreamHeaders)) // one allocation for every value
				for i, x := range o.upstreamHeaders {
					vals[i] = x.GetValue()
					r2.Header[g.canonicalName(x.GetName())] = vals[i : i+1 : i+1]
				}
			}
			next.ServeHTTP(w, r2)
		})
	}
}

type readCloser struct {
	io.Reader
	io.Closer
}

// httpDenial is the status and generic message for a denial.
func httpDenial(st int32) (int, string) {
	switch st {
	case http.StatusUnauthorized:
		return http.StatusUnauthorized, "unauthenticated"
	case http.StatusNotFound:
		return http.StatusNotFound, "not found"
	case http.StatusTooManyRequests:
		return http.StatusTooManyRequests, "rate limited"
	case http.StatusBadRequest:
		return http.StatusBadRequest, "malformed request"
	case http.StatusRequestEntityTooLarge:
		return http.StatusRequestEntityTooLarge, "request body too large"
	}
	return http.StatusForbidden, "permission denied"
}

// writeJSONError writes {"error":{"code":st,"message":msg}}. msg comes from this package, never
// from the request.
func writeJSONError(w http.ResponseWriter, st int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(st)
	_, _ = io.WriteString(w, `{"error":{"code":`+strconv.Itoa(st)+`,"message":`+strconv.Quote(msg)+`}}`+"\n")
}

// lowerHeaders is h with lower-case names, repeated values joined with ",".
func lowerHeaders(h http.Header) map[string]string {
	m := make(map[string]string, len(h))
	for k, v := range h {
		m[lowerName(k)] = strings.Join(v, ",")
	}
	return m
}

// httpPeerCertificate is the client's TLS leaf certificate as PEM, or "".
func httpPeerCertificate(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.TLS.PeerCertificates[0].Raw}))
}
