package clients

import (
	"context"
	"log/slog"
	"strings"
	"time"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
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
	failOpen                bool
	log                     *slog.Logger
}

func defaultClientConfig() clientConfig {
	return clientConfig{
		timeout:     DefaultTimeout,
		maxAttempts: DefaultMaxAttempts,
		baseBackoff: DefaultBaseBackoff,
		maxBackoff:  DefaultMaxBackoff,
	}
}

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyToClient(c *clientConfig) { f(c) }

// WithTimeout bounds every call, its retries included. The caller's deadline still applies
// when it is earlier. Default DefaultTimeout (250 ms); 0 leaves only the caller's deadline.
func WithTimeout(d time.Duration) ClientOption {
	return clientOptionFunc(func(c *clientConfig) {
		if d >= 0 {
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

// WithFailOpen makes Check, Authorize and CheckRateLimit answer an allowed decision with
// FailedOpen set, and a warning in the log, when Warden cannot be reached (see Unreachable).
// The caller's own cancellation or deadline is never turned into an allowed decision.
// Default: fail closed, the error is returned. Note that Warden itself answers UNAVAILABLE
// when a backend is down and its policy says fail closed; the client cannot tell that from an
// unreachable Warden, so WithFailOpen overrides that policy for this service.
func WithFailOpen() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.failOpen = true })
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

// ActionFunc maps a request name to an explicit action ("resource:verb") and resource. The
// name is the gRPC full method ("/pkg.Service/Method") for the interceptors, and
// "METHOD /path" for the middleware. ok false leaves the request to Warden's route table.
// The function must be safe for concurrent use and must not block.
type ActionFunc func(name string) (action string, res *wardenv1.Resource, ok bool)

// RateLimitFunc returns the rate-limit domain and descriptors for a request mapped to an
// action (by WithActions), in addition to what Warden's configuration applies. The
// principal's tier goes with the request. It must be safe for concurrent use.
type RateLimitFunc func(ctx context.Context, name string) (domain string, descriptors []*wardenv1.RateLimitDescriptor)

type handlerConfig struct {
	skip        []string
	actions     ActionFunc
	rateLimits  RateLimitFunc
	credHeaders []string
	cache       *AuthnCache
	maxBody     int64 // 0: the body is not forwarded
}

func defaultHandlerConfig() handlerConfig {
	return handlerConfig{skip: defaultSkip, credHeaders: defaultCredentialHeaders}
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

// WithActions maps requests to explicit actions and resources instead of Warden's route
// table. Requests it does not map (ok false) go to the route table. Default: every request
// goes to the route table (a CheckRequest with http {method: "POST", path: full method} and
// grpc_method for gRPC; method, path, host and headers for HTTP).
func WithActions(f ActionFunc) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.actions = f })
}

// WithRateLimits adds rate limits to requests mapped by WithActions. Default none.
func WithRateLimits(f RateLimitFunc) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) { c.rateLimits = f })
}

// WithCredentialHeaders replaces the request headers (gRPC metadata keys) forwarded to
// Warden as credentials. Names are matched case-insensitively. Default "authorization" and
// "x-api-key".
func WithCredentialHeaders(names ...string) HandlerOption {
	return handlerOptionFunc(func(c *handlerConfig) {
		c.credHeaders = make([]string, len(names))
		for i, n := range names {
			c.credHeaders[i] = strings.ToLower(n)
		}
	})
}

// WithAuthnCache caches positive authentication results in c for requests mapped to an action
// by WithActions (see AuthnCache for what is cached and for how long). Requests that go to
// Warden's route table always use one Check call, since only Check can match a route.
// Default: no cache.
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

// skipped reports whether name matches the skip list.
func (c *handlerConfig) skipped(name string) bool {
	for _, s := range c.skip {
		if name == s || (strings.HasSuffix(s, "/") && strings.HasPrefix(name, s)) {
			return true
		}
	}
	return false
}

// credentialHeaders copies the credential headers of h (canonical or lower-case keys, via
// get) into a map with lower-case names, repeated values joined with ",".
func (c *handlerConfig) credentialHeaders(get func(string) []string) map[string]string {
	var m map[string]string
	for _, n := range c.credHeaders {
		if v := get(n); len(v) > 0 {
			if m == nil {
				m = make(map[string]string, len(c.credHeaders))
			}
			m[n] = strings.Join(v, ",")
		}
	}
	return m
}
