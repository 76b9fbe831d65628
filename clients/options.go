package clients

import (
	"context"
	"log/slog"
	"strings"
	"time"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
)

// Defaults of the Client's options.
const (
	// DefaultTimeout bounds each call, retries included (WithTimeout).
	DefaultTimeout = 250 * time.Millisecond
	// DefaultMaxAttempts is the number of attempts of a call Warden answers UNAVAILABLE
	// (WithRetry).
	DefaultMaxAttempts = 3
	// DefaultBaseBackoff and DefaultMaxBackoff bound the waits between attempts (WithRetry).
	DefaultBaseBackoff = 10 * time.Millisecond
	DefaultMaxBackoff  = 100 * time.Millisecond
	// DefaultMaxBody caps the body WithBody forwards when given 0.
	DefaultMaxBody = 64 << 10
	// DefaultOutageLogInterval is how often an outage of Warden is logged (WithOutageLog).
	DefaultOutageLogInterval = 10 * time.Second
)

// FailurePolicy says what a call answers when Warden cannot be reached (see Unreachable).
type FailurePolicy int

const (
	// FailClosed returns the error: the interceptors answer UNAVAILABLE, the middleware 503.
	FailClosed FailurePolicy = iota
	// FailOpen returns an allowed decision whose FailedOpen field is true.
	FailOpen
)

// DefaultCredentialHeaders are the request headers (or gRPC metadata keys) forwarded to
// Warden as Credentials.headers unless WithCredentialHeaders replaces them.
var defaultCredentialHeaders = []string{"authorization", "x-api-key"}

// DefaultSkip lists the gRPC methods the interceptors let through without a Check unless
// WithSkip replaces the list: health checks and server reflection. An entry that ends in "/"
// matches every method of that service.
var defaultSkip = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// ClientOption configures a Client. The set is sealed: options come only from this package.
type ClientOption interface {
	applyToClient(*clientConfig)
}

type clientConfig struct {
	timeout                 time.Duration
	maxAttempts             int
	baseBackoff, maxBackoff time.Duration
	// authFailOpen and rateLimitFailOpen are the two failure policies.
	authFailOpen, rateLimitFailOpen bool
	outageInterval                  time.Duration
	log                             *slog.Logger
}

func defaultClientConfig() clientConfig {
	return clientConfig{
		timeout:     DefaultTimeout,
		maxAttempts: DefaultMaxAttempts,
		baseBackoff: DefaultBaseBackoff,
		maxBackoff:  DefaultMaxBackoff,

		rateLimitFailOpen: true,
		outageInterval:    DefaultOutageLogInterval,
	}
}

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyToClient(c *clientConfig) { f(c) }

// WithTimeout bounds every call, its retries included. The caller's deadline still applies
// when it is earlier. Default DefaultTimeout (250 ms); a call is never unbounded, so 0 or a
// negative value keeps the default.
func WithTimeout(d time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithRetry sets how calls answered UNAVAILABLE are retried: at most maxAttempts attempts
// in all (1 turns retries off), waiting before attempt n+1 a uniformly random time below
// min(maxBackoff, baseBackoff·2^(n-1)) ("full jitter"). A wait that would end after the
// deadline is not taken. Other codes are never retried. Defaults: DefaultMaxAttempts (3),
// DefaultBaseBackoff (10 ms), DefaultMaxBackoff (100 ms); values below 1 (attempts) or 0
// (waits) keep the default.
func WithRetry(maxAttempts int, baseBackoff, maxBackoff time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if maxAttempts >= 1 {
			c.maxAttempts = maxAttempts
		}
		if baseBackoff >= 0 {
			c.baseBackoff = baseBackoff
		}
		if maxBackoff >= 0 {
			c.maxBackoff = maxBackoff
		}
	})
}

// WithAuthFailurePolicy sets what Check and Authorize answer when Warden cannot be reached,
// and so what the interceptors and the middleware do when they cannot decide a request.
// Default FailClosed: the error is returned, the end client gets UNAVAILABLE or 503.
//
// Under FailOpen the decision is allowed with FailedOpen set and no principal, and the
// interceptors and the middleware run the handler with a context that carries no principal
// but the FailedOpenFrom marker ("unauthenticated, Warden unavailable"); no client-sent
// identity header reaches it either. Authenticate never fails open: there is no identity to
// stand in for one Warden could not establish. The caller's own cancellation or deadline is
// never turned into an allowed decision. Warden itself answers UNAVAILABLE when a backend is
// down and its policy says fail closed; the client cannot tell that from an unreachable
// Warden, so FailOpen overrides that policy for this service.
func WithAuthFailurePolicy(p FailurePolicy) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.authFailOpen = p == FailOpen })
}

// WithRateLimitFailurePolicy sets what CheckRateLimit (and so the interceptors and the
// middleware on a request decided from their AuthnCache) answers when Warden cannot be
// reached. Default FailOpen, as Envoy's rate-limit filter does: the request goes on, with
// its principal, unlimited, and FailedOpen set on the decision. FailClosed returns the error.
func WithRateLimitFailurePolicy(p FailurePolicy) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.rateLimitFailOpen = p == FailOpen })
}

// WithFailOpen is WithAuthFailurePolicy(FailOpen) together with
// WithRateLimitFailurePolicy(FailOpen).
//
// Deprecated: it opens authentication and authorization too, which is rarely what a service
// wants; say so explicitly with WithAuthFailurePolicy(FailOpen). Rate limiting fails open by
// default.
func WithFailOpen() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.authFailOpen, c.rateLimitFailOpen = true, true })
}

// WithOutageLog sets how often an outage is logged: while Warden cannot be reached, at most
// one warning per interval, carrying the number of failed calls since the last one, so that
// an outage under load does not flood the log. Default DefaultOutageLogInterval (10 s); 0 or
// less keeps the default.
func WithOutageLog(interval time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if interval > 0 {
			c.outageInterval = interval
		}
	})
}

// WithLogger sets the logger for fail-open warnings and the interceptors' and middleware's
// denials (at debug level) and errors. Default slog.Default().
func WithLogger(l *slog.Logger) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.log = l })
}

// HandlerOption configures the gRPC interceptors and the HTTP middleware. The set is sealed:
// options come only from this package.
type HandlerOption interface {
	applyToHandler(*handlerConfig)
}

// RequestActionFunc maps a request to an explicit action ("resource:verb") and resource,
// seeing the request itself, so that a resource's owner or tenant can come from a field of
// the message and ownership is decided in the one Check made before the handler runs (and
// before any rate-limit quota is spent).
//
// name is the gRPC full method ("/pkg.Service/Method") for the interceptors, and
// "METHOD /path" for the middleware. req is the unary request message for
// UnaryServerInterceptor, nil for StreamServerInterceptor (Warden is asked when the stream
// opens, before any message), and the *http.Request for the middleware (whose body it must
// not consume). ok false leaves the request to Warden's route table. The function must be
// safe for concurrent use and must not block.
type RequestActionFunc func(ctx context.Context, name string, req any) (action string, res *wardenv1.Resource, ok bool)

// ActionFunc maps a request name to an explicit action and resource; see RequestActionFunc,
// which also sees the request.
type ActionFunc func(name string) (action string, res *wardenv1.Resource, ok bool)

// RateLimitFunc returns the rate-limit domain and descriptors for a request mapped to an
// action (by WithRequestActions), in addition to what Warden's configuration applies. The
// principal's tier goes with the request. It must be safe for concurrent use.
type RateLimitFunc func(ctx context.Context, name string) (domain string, descriptors []*wardenv1.RateLimitDescriptor)

type handlerConfig struct {
	skip        []string
	actions     RequestActionFunc
	rateLimits  RateLimitFunc
	credHeaders []string // lower case, for gRPC metadata and Warden
	credCanon   []string // the same in canonical form, for http.Header
	cache       *AuthnCache
	maxBody     int64 // 0: the body is not forwarded
	// identity names the identity headers: the request's own copies are removed.
	identity idheader.Set
	// idCanon is identity's names in canonical form, for http.Header.
	idCanon          [idheader.Count]string
	rateLimitHeaders RateLimitHeaders
}

func defaultHandlerConfig() handlerConfig {
	c := handlerConfig{skip: defaultSkip, identity: idheader.Default()}
	c.setCredentialHeaders(defaultCredentialHeaders)
	return c
}

type handlerOptionFunc func(*handlerConfig)

func (f handlerOptionFunc) applyToHandler(c *handlerConfig) { f(c) }

// WithSkip replaces the list of requests let through without asking Warden (and without a
// principal in their context). For the interceptors, an entry is a full method
// ("/pkg.Service/Method") or a service prefix ending in "/" ("/grpc.health.v1.Health/");
// the default is health checks and server reflection. For the middleware, an entry is an
// exact path ("/healthz") or a prefix ending in "/"; the default is none.
func WithSkip(names ...string) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.skip = append([]string(nil), names...) })
}

// WithRequestActions maps requests to explicit actions and resources instead of Warden's
// route table, seeing the request message (see RequestActionFunc). Requests it does not map
// (ok false) go to the route table. Default: every request goes to the route table (a
// CheckRequest with http {method: "POST", path: full method} and grpc_method for gRPC;
// method, path, host and headers for HTTP).
func WithRequestActions(f RequestActionFunc) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.actions = f })
}

// WithActions is WithRequestActions for a function that sees only the request's name.
//
// Deprecated: use WithRequestActions, whose function also sees the request message, so
// that ownership is decided in the interceptor's Check rather than by a second call in the
// handler.
func WithActions(f ActionFunc) HandlerOption {
	return WithRequestActions(func(_ context.Context, name string, _ any) (string, *wardenv1.Resource, bool) {
		return f(name)
	})
}

// WithRateLimits adds rate limits to requests mapped by WithRequestActions. Default none.
func WithRateLimits(f RateLimitFunc) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.rateLimits = f })
}

// WithCredentialHeaders replaces the request headers (gRPC metadata keys) forwarded to
// Warden as credentials. Names are matched case-insensitively. Default "authorization" and
// "x-api-key".
func WithCredentialHeaders(names ...string) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.setCredentialHeaders(names) })
}

// WithAuthnCache caches allowed decisions in c, so that a repeated request costs at most one
// CheckRateLimit instead of a Check (see AuthnCache for what is cached, under which key, and
// for how long). Default: no cache.
func WithAuthnCache(c *AuthnCache) HandlerOption {
	return handlerOptionFunc(func(h *handlerConfig) { h.cache = c })
}

// WithBody makes the middleware forward the request body (for webhook routes), read up to
// maxBytes (0 means DefaultMaxBody, 64 KiB); a longer body is answered 413 without asking
// Warden. The handler still reads the whole body. Default: the body is not forwarded. The
// interceptors ignore it.
func WithBody(maxBytes int64) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) {
		if maxBytes <= 0 {
			maxBytes = DefaultMaxBody
		}
		c.maxBody = maxBytes
	})
}

// WithIdentityHeaders names the identity headers as the deployment's Warden does
// (authn.identity_headers in its configuration; build the Set with idheader.New from the same
// values): every request header or metadata key the Set reserves (its names and anything under
// its prefix, in any case) is removed before the handler runs, on every path, and Warden's are
// set. Default idheader.Default() (x-warden-*); a zero Set keeps the default.
func WithIdentityHeaders(s idheader.Set) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) {
		if !s.IsZero() {
			c.identity = s
		}
	})
}

// RateLimitHeaders chooses which of Warden's rate-limit headers reach the end client, on
// allowed requests and on 429 (or RESOURCE_EXHAUSTED) alike. Retry-After and other headers
// always do.
type RateLimitHeaders uint8

const (
	// RateLimitHeadersAsSent passes on every header Warden sent: those of its own
	// rate_limit.headers setting. The default.
	RateLimitHeadersAsSent RateLimitHeaders = iota
	// RateLimitHeadersIETF passes on RateLimit-Policy and RateLimit only.
	RateLimitHeadersIETF
	// RateLimitHeadersXRateLimit passes on X-RateLimit-Limit, -Remaining and -Reset only.
	RateLimitHeadersXRateLimit
	// RateLimitHeadersBoth passes on both sets.
	RateLimitHeadersBoth
)

// ParseRateLimitHeaders parses a flavour as Warden's rate_limit.headers spells it: "ietf",
// "x-ratelimit" or "both".
func ParseRateLimitHeaders(s string) (RateLimitHeaders, bool) {
	switch s {
	case "ietf":
		return RateLimitHeadersIETF, true
	case "x-ratelimit":
		return RateLimitHeadersXRateLimit, true
	case "both":
		return RateLimitHeadersBoth, true
	}
	return RateLimitHeadersAsSent, false
}

// WithRateLimitHeaders chooses the rate-limit headers' flavour the end client sees (see
// RateLimitHeaders). The client only passes on what Warden sent: a flavour Warden does not
// send (its rate_limit.headers) is not made up, so set Warden to the same flavour or to
// "both". Default RateLimitHeadersAsSent.
func WithRateLimitHeaders(f RateLimitHeaders) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.rateLimitHeaders = f })
}

// passes reports whether a response header of Warden's named name reaches the end client.
func (f RateLimitHeaders) passes(name string) bool {
	if f == RateLimitHeadersAsSent || f == RateLimitHeadersBoth {
		return true
	}
	const x = "x-ratelimit-"
	switch {
	case strings.EqualFold(name, "ratelimit"), strings.EqualFold(name, "ratelimit-policy"):
		return f == RateLimitHeadersIETF
	case len(name) >= len(x) && strings.EqualFold(name[:len(x)], x):
		return f == RateLimitHeadersXRateLimit
	}
	return true
}

// skipped reports whether name matches the skip list.
func (c *handlerConfig) skipped(name string) bool {
	for _, s := range c.skip {
		if name == s || (strings.HasSuffix(s, "/") && strings.HasPrefix(name, s)) {
			return true
		}
	}
	return false
}

func (c *handlerConfig) setCredentialHeaders(names []string) {
	c.credHeaders, c.credCanon = make([]string, len(names)), make([]string, len(names))
	for i, n := range names {
		c.credHeaders[i], c.credCanon[i] = strings.ToLower(n), canonicalName(n)
	}
}

// credentialHeaders copies the credential headers of h into a map with lower-case names,
// repeated values joined with ",". h is a metadata.MD (lower-case keys) or, when canonical,
// an http.Header.
func credentialHeaders[M ~map[string][]string](c *handlerConfig, h M, canonical bool) map[string]string {
	names := c.credHeaders
	if canonical {
		names = c.credCanon
	}
	var m map[string]string
	for i, n := range names {
		if v := h[n]; len(v) > 0 {
			if m == nil {
				m = make(map[string]string, len(names))
			}
			m[c.credHeaders[i]] = strings.Join(v, ",")
		}
	}
	return m
}
