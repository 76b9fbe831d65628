package envoy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
)

// Checker decides on one request: *service.Server in process, or a
// wardenv1.WardenServiceClient (whose Check also takes grpc.CallOptions) remotely. A gRPC error
// means Warden could not decide.
type Checker interface {
	Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error)
}

// PooledChecker is a Checker whose answers are handed back once read: *service.Server in
// process (CheckPooled). The adapter converts the answer to Envoy's, then calls Release, after
// which it reads nothing of the answer (the strings it copied excepted), so that the next
// call reuses its messages instead of allocating them. release may be nil.
type PooledChecker interface {
	CheckPooled(ctx context.Context, req *wardenv1.CheckRequest) (resp *wardenv1.CheckResponse, release interface{ Release() }, err error)
}

// FailureMode is what the ext_authz adapter answers when Warden cannot decide (Check returns
// an error other than INVALID_ARGUMENT and UNIMPLEMENTED, which are always denied).
type FailureMode uint8

const (
	// FailClosed denies with 503 Service Unavailable. The default.
	FailClosed FailureMode = iota
	// FailOpen allows the request, removing the identity headers (so that a client cannot
	// pass its own off as Warden's) and setting x-envoy-auth-failure-mode-allowed: true, as
	// Envoy's own failure_mode_allow does.
	FailOpen
	// FailError answers the gRPC error (UNAVAILABLE, DEADLINE_EXCEEDED, ...), and turns
	// Warden's 503 decisions (a dependency that could not answer in time) into UNAVAILABLE,
	// so that Envoy's own failure_mode_allow and status_on_error decide. Only for deployments
	// that rely on Envoy's failure handling: with failure_mode_allow: true, every failure is
	// an allow.
	FailError
)

// ParseFailureMode parses "closed", "open" or "error".
func ParseFailureMode(s string) (FailureMode, bool) {
	switch s {
	case "closed":
		return FailClosed, true
	case "open":
		return FailOpen, true
	case "error":
		return FailError, true
	}
	return 0, false
}

// UnmarshalText reads a mode's config name: closed, open or error (empty: FailClosed).
func (m *FailureMode) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = FailClosed
		return nil
	}
	v, ok := ParseFailureMode(string(b))
	if !ok {
		return fmt.Errorf("must be closed, open or error, not %q", b)
	}
	*m = v
	return nil
}

func (m FailureMode) String() string {
	switch m {
	case FailOpen:
		return "open"
	case FailError:
		return "error"
	}
	return "closed"
}

// ContextKeyFailureMode is the context_extensions key with which an Envoy route (or virtual
// host) overrides the failure mode: "open" or "closed". Set it in the route's
// typed_per_filter_config for envoy.filters.http.ext_authz (check_settings.context_extensions).
const ContextKeyFailureMode = "warden_failure_mode"

// defaultIdentity is the identity headers' default names (package idheader).
var defaultIdentity = idheader.Default()

// AuthConfig configures an AuthServer. The zero value is usable: fail closed, logs discarded.
type AuthConfig struct {
	// Disabled makes Check answer UNIMPLEMENTED (config: envoy.ext_authz.enabled false).
	Disabled bool `yaml:"-"`
	// FailureMode applies when Warden cannot decide. Default FailClosed.
	FailureMode FailureMode `yaml:"failure_mode"`
	// Identity names the identity headers, as the Warden it asks does (service.HeaderNames):
	// every header of the request that it reserves is removed on every allow, whoever
	// answered. The zero Set means idheader.Default() (x-warden-*).
	Identity idheader.Set `yaml:"-"`
	// IdentityHeaders are removed from the upstream request on fail-open, besides every
	// header of the request that Identity reserves. Default: Identity's names, which Envoy
	// may not have sent to Warden (its allowed_headers).
	IdentityHeaders []string `yaml:"-"`
	// Logger receives the errors that triggered the failure mode. Default: discard.
	Logger *slog.Logger `yaml:"-"`
	// ReuseAnswers makes Check build its answers in reused memory: an answer is handed back
	// for the next call's use once Codec has marshalled it, so that an allowed decision
	// allocates no answer. Set it only on a server whose codec is Codec
	// (grpc.ForceServerCodecV2) and where nothing reads a sent answer after marshalling (a
	// stats handler's OutPayload.Payload, grpc's EnableTracing): cmd/warden does. An answer
	// never marshalled by Codec (one of a direct call of Check) is simply not reused.
	ReuseAnswers bool `yaml:"-"`
}

// AuthServer implements envoy.service.auth.v3.Authorization by asking a Checker. Create it
// with NewAuthServer; it is safe for concurrent use, and SetConfig may be called while it
// serves (config reload).
type AuthServer struct {
	authv3.UnimplementedAuthorizationServer
	checker Checker
	cfg     atomic.Pointer[AuthConfig]
}

// NewAuthServer returns an AuthServer asking c.
func NewAuthServer(c Checker, cfg AuthConfig) *AuthServer {
	s := &AuthServer{checker: c}
	s.SetConfig(cfg)
	return s
}

// SetConfig replaces the configuration for the following calls.
func (s *AuthServer) SetConfig(cfg AuthConfig) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Identity.IsZero() {
		cfg.Identity = defaultIdentity
	}
	if cfg.IdentityHeaders == nil {
		n := cfg.Identity.Names()
		cfg.IdentityHeaders = n[:]
	}
	s.cfg.Store(&cfg)
}

// Check answers one ext_authz request.
func (s *AuthServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	cfg := s.cfg.Load()
	if cfg.Disabled {
		return nil, status.Error(codes.Unimplemented, "ext_authz is not enabled on this Warden (config: envoy.ext_authz.enabled)")
	}
	c := newCheckCall(cfg)
	var (
		resp *wardenv1.CheckResponse
		err  error
	)
	if pc, ok := s.checker.(PooledChecker); ok {
		var release interface{ Release() }
		resp, release, err = pc.CheckPooled(ctx, c.request(req))
		if release != nil {
			defer release.Release() // after c.response has copied what it needs
		}
	} else {
		resp, err = s.checker.Check(ctx, c.request(req))
	}
	if err != nil {
		return c.sent(s.failure(ctx, c, cfg, req, err))
	}
	if !resp.GetAllowed() && resp.GetHttpStatus() == 503 && s.mode(cfg, req) == FailError {
		// A dependency could not answer: Envoy's failure mode decides, as asked.
		return c.sent(nil, status.Error(codes.Unavailable, "Warden could not decide: a dependency is unavailable"))
	}
	return c.sent(c.response(resp), nil)
}

// mode is the failure mode of req: its route's (context extension), else the adapter's.
func (s *AuthServer) mode(cfg *AuthConfig, req *authv3.CheckRequest) FailureMode {
	if m, ok := ParseFailureMode(req.GetAttributes().GetContextExtensions()[ContextKeyFailureMode]); ok {
		return m
	}
	return cfg.FailureMode
}

// checkCall is what one Check builds, in one allocation: the Warden request and Envoy's
// answer when allowed, with up to ten header options. A denial's parts, the peer's
// credentials and more header options are allocated apart, when needed. The parts live as
// long as the call (until gRPC has marshalled the answer); with AuthConfig.ReuseAnswers the
// call is then reused (authAnswers).
type checkCall struct {
	identity *idheader.Set // the names whose client copies are removed
	pooled   bool          // from authAnswers: handed back once its answer is marshalled
	// remove holds the answer's headers to remove: a copy, since the Warden answer that
	// listed them may be reused once converted (PooledChecker).
	remove [idheader.Count + 4]string

	req  wardenv1.CheckRequest
	http wardenv1.HttpRequest

	resp   authv3.CheckResponse
	ok     authv3.CheckResponse_OkResponse
	okResp authv3.OkHttpResponse

	// An allow's header options, when they fit: the identity headers and the rate-limit
	// ones (RateLimit-Policy, RateLimit, and Retry-After on a shadow refusal).
	opts    [idheader.Count + 3]headerOption
	optPtrs [idheader.Count + 3]*corev3.HeaderValueOption
}

// authAnswers recycles the calls whose answers were marshalled (AuthConfig.ReuseAnswers).
var authAnswers reused[checkCall, *checkCall]

// newCheckCall returns a zero call for one Check under cfg: a reused one with
// cfg.ReuseAnswers.
func newCheckCall(cfg *AuthConfig) *checkCall {
	if !cfg.ReuseAnswers {
		return &checkCall{identity: &cfg.Identity}
	}
	c := authAnswers.get()
	c.identity, c.pooled = &cfg.Identity, true
	return c
}

// sent passes Check's result through, a pooled call's answer registered to be handed back
// once Codec has marshalled it (authAnswers).
func (c *checkCall) sent(resp *authv3.CheckResponse, err error) (*authv3.CheckResponse, error) {
	if c.pooled {
		authAnswers.sent(c, unsafe.Pointer(resp))
	}
	return resp, err
}

// answer is the address of c's answer.
func (c *checkCall) answer() unsafe.Pointer { return unsafe.Pointer(&c.resp) }

// headerOptions holds n header options: c's own when they fit, else new ones.
func (c *checkCall) headerOptions(n int) headerOptions {
	if n > len(c.opts) {
		return newHeaderOptions(n)
	}
	o := headerOptions{c.optPtrs[:n:n], c.opts[:n:n]}
	for i := range o.ptrs {
		o.ptrs[i] = &o.opts[i].opt
	}
	return o
}

// deniedParts is the rest of a denial, in one allocation.
type deniedParts struct {
	deny   authv3.CheckResponse_DeniedResponse
	denied authv3.DeniedHttpResponse
	httpSt typev3.HttpStatus
}

// The constant parts of the answers are built once and shared by all of them: a message is
// only read when gRPC marshals it (the size cache it writes is atomic), and the answers are
// not modified after Check returns them.
var (
	okStatus           = &rpcstatus.Status{Code: int32(codes.OK)}
	deniedStatuses     [17]*rpcstatus.Status // by code: the denials' gRPC statuses
	jsonContentType    = constOption("content-type", "application/json")
	retryAfterOne      = constOption("retry-after", "1")
	failureModeAllowed = constOption("x-envoy-auth-failure-mode-allowed", "true")
)

func init() {
	for _, c := range []codes.Code{codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.ResourceExhausted, codes.Unavailable, codes.AlreadyExists} {
		deniedStatuses[c] = &rpcstatus.Status{Code: int32(c), Message: c.String()}
	}
}

func deniedStatus(c codes.Code) *rpcstatus.Status {
	if int(c) < len(deniedStatuses) && deniedStatuses[c] != nil {
		return deniedStatuses[c]
	}
	return &rpcstatus.Status{Code: int32(c), Message: c.String()}
}

func constOption(name, value string) *corev3.HeaderValueOption {
	var h headerOption
	h.set(name, value)
	return &h.opt
}

// headerOption is one header option with its header.
type headerOption struct {
	opt corev3.HeaderValueOption
	hv  corev3.HeaderValue
}

// headerOptions holds n header options: ptrs for a repeated field, opts to fill with set.
type headerOptions struct {
	ptrs []*corev3.HeaderValueOption
	opts []headerOption
}

func newHeaderOptions(n int) headerOptions {
	o := headerOptions{make([]*corev3.HeaderValueOption, n), make([]headerOption, n)}
	for i := range o.ptrs {
		o.ptrs[i] = &o.opts[i].opt
	}
	return o
}

// take splits the first n options off o.
func (o *headerOptions) take(n int) headerOptions {
	t := headerOptions{o.ptrs[:n:n], o.opts[:n:n]}
	o.ptrs, o.opts = o.ptrs[n:], o.opts[n:]
	return t
}

// set makes h set a header, replacing any value of the same name (Envoy's
// OVERWRITE_IF_EXISTS_OR_ADD; "append" is left unset so that the action applies).
func (h *headerOption) set(name, value string) {
	h.hv.Key, h.hv.Value = name, value
	h.opt.Header = &h.hv
	h.opt.AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
}

// failure answers when Warden could not decide: a malformed request is denied with 400 whatever
// the mode, and so is, with 503, a Warden that cannot decide at all (UNIMPLEMENTED: no route
// table, no authn section), so that a configuration mistake never opens every route; otherwise
// the failure mode (the route's, else the adapter's) applies. Only FailError answers an error.
func (s *AuthServer) failure(ctx context.Context, c *checkCall, cfg *AuthConfig, req *authv3.CheckRequest, err error) (*authv3.CheckResponse, error) {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument:
		return c.deniedResponse(codes.InvalidArgument, 400, nil), nil
	case codes.Unimplemented:
		cfg.Logger.LogAttrs(ctx, slog.LevelError, "ext_authz: Warden is not configured to decide this request; denying",
			slog.String("error", st.Message()))
		return c.deniedResponse(codes.Unavailable, 503, nil), nil
	}
	mode := s.mode(cfg, req)
	cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ext_authz: Warden could not decide; applying the failure mode",
		slog.String("failure_mode", mode.String()), slog.String("code", st.Code().String()), slog.String("error", st.Message()))
	switch mode {
	case FailOpen:
		c.okResp.Headers = []*corev3.HeaderValueOption{failureModeAllowed}
		c.okResp.HeadersToRemove = c.withClientIdentity(cfg.IdentityHeaders, nil)
		return c.okResponse(), nil
	case FailError:
		return nil, st.Err()
	}
	return c.deniedResponse(codes.Unavailable, 503, nil), nil
}

// CheckRequestFromEnvoy maps an ext_authz request to a Warden Check request, reading the fields
// as Envoy's filter fills them (source/extensions/filters/common/ext_authz/check_request_utils.cc,
// CheckRequestUtils::setHttpRequest and setAttrContextPeer):
//
//   - method, host (the :authority) and path from attributes.request.http; the path is the
//     :path header with its query string, which is split off;
//   - headers: the headers map (names already lower case, repeated headers joined with ","),
//     or header_map when the filter sets encode_raw_headers, whose names are lower-cased and
//     repeated headers joined; pseudo-headers (":path", ...) are dropped;
//   - the body (with_request_body): raw_body when pack_as_bytes is set, else body. Envoy marks
//     a truncated body with x-envoy-auth-partial-body: true; such a body fails a webhook
//     signature check, as it should;
//   - source.principal (URI SAN, else DNS SAN, else subject of the client certificate) and
//     source.certificate (URL-encoded PEM, with include_peer_certificate) as the peer's
//     credentials;
//   - context_extensions as http.context.
//
// The request's headers map is reused, not copied (pseudo-headers are deleted from it), and a
// string body is shared, not copied: the Warden request's body must not be written to.
func CheckRequestFromEnvoy(req *authv3.CheckRequest) *wardenv1.CheckRequest {
	return new(checkCall).request(req)
}

func (c *checkCall) request(req *authv3.CheckRequest) *wardenv1.CheckRequest {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if headers == nil && h.GetHeaderMap() != nil {
		headers = make(map[string]string, len(h.GetHeaderMap().GetHeaders()))
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			k := strings.ToLower(hv.GetKey())
			if k == "" || k[0] == ':' {
				continue
			}
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			if prev, ok := headers[k]; ok {
				v = prev + "," + v
			}
			headers[k] = v
		}
	} else if len(headers) > 0 {
		// Envoy's map has lower-case names already (its codecs lower-case them), and only
		// the pseudo-headers its codecs accept: delete those by name rather than scan the
		// whole map.
		for _, k := range pseudoHeaders {
			delete(headers, k)
		}
	}
	path := h.GetPath()
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	body := h.GetRawBody()
	if len(body) == 0 && h.GetBody() != "" {
		// Shared with the string, not copied: read only.
		body = unsafe.Slice(unsafe.StringData(h.GetBody()), len(h.GetBody()))
	}
	c.http.Method = h.GetMethod()
	c.http.Path = path
	c.http.Host = h.GetHost()
	c.http.Headers = headers
	c.http.Body = body
	c.http.Context = attrs.GetContextExtensions()
	c.req.Http = &c.http
	if src := attrs.GetSource(); src.GetPrincipal() != "" || src.GetCertificate() != "" {
		c.req.Credentials = &wardenv1.Credentials{
			Headers:         headers,
			PeerCertificate: src.GetCertificate(),
			PeerPrincipal:   src.GetPrincipal(),
		}
	}
	return &c.req
}

// pseudoHeaders are the HTTP/2 and HTTP/3 pseudo-headers an Envoy request can carry (RFC 9113
// 8.3.1, and :protocol for extended CONNECT, RFC 8441).
var pseudoHeaders = [...]string{":authority", ":method", ":path", ":scheme", ":protocol"}

// CheckResponseToEnvoy maps Warden's decision to Envoy's answer. Allowed: an OkHttpResponse
// that sets Warden's upstream headers, replacing (never appending to) any header of the same
// name the client sent, removes upstream_headers_to_remove, and adds the RateLimit headers to
// the client's response. Denied: a DeniedHttpResponse with Warden's HTTP status and response
// headers (WWW-Authenticate, RateLimit*, Retry-After) and a small JSON body with a generic
// message: the detailed reason stays in Warden's logs. The answer shares its constant parts
// (statuses, content-type) with every other: do not modify it.
func CheckResponseToEnvoy(r *wardenv1.CheckResponse) *authv3.CheckResponse {
	return (&checkCall{identity: &defaultIdentity}).response(r)
}

func (c *checkCall) response(r *wardenv1.CheckResponse) *authv3.CheckResponse {
	if r.GetAllowed() {
		up, down := r.GetUpstreamHeaders(), r.GetResponseHeaders()
		if rm := c.withClientIdentity(r.GetUpstreamHeadersToRemove(), up); len(rm) > 0 {
			c.okResp.HeadersToRemove = append(c.remove[:0], rm...)
		}
		if len(up)+len(down) == 0 {
			return c.okResponse()
		}
		all := c.headerOptions(len(up) + len(down))
		if len(up) > 0 {
			o := all.take(len(up))
			for i, h := range up {
				o.opts[i].set(h.GetName(), h.GetValue())
			}
			c.okResp.Headers = o.ptrs
		}
		if len(down) > 0 {
			for i, h := range down {
				all.opts[i].set(h.GetName(), h.GetValue())
			}
			c.okResp.ResponseHeadersToAdd = all.ptrs
		}
		return c.okResponse()
	}
	httpStatus := int(r.GetHttpStatus())
	code := codes.PermissionDenied
	switch httpStatus {
	case 400:
		code = codes.InvalidArgument // a malformed path or resource: the same pair as a malformed request
	case 401:
		code = codes.Unauthenticated
	case 200, 409:
		code = codes.AlreadyExists // a replayed webhook delivery (webhooks.replay_status)
	case 429:
		code = codes.ResourceExhausted
	case 503:
		code = codes.Unavailable
	case 0:
		httpStatus = 403
	}
	return c.deniedResponse(code, httpStatus, r.GetResponseHeaders())
}

// withClientIdentity is remove plus every header of the request that c.identity reserves
// and that is neither in it nor set (Envoy removes after it sets), so that no identity header of the
// client's own reaches the upstream, whoever answered. remove is not modified; with nothing to
// add it is returned as is.
func (c *checkCall) withClientIdentity(remove []string, set []*wardenv1.Header) []string {
	added := false
	for name := range c.http.Headers {
		if !c.identity.Reserved(name) || slices.Contains(remove, name) || isSet(set, name) {
			continue
		}
		if !added {
			remove, added = append(make([]string, 0, len(remove)+4), remove...), true
		}
		remove = append(remove, name)
	}
	return remove
}

func isSet(set []*wardenv1.Header, name string) bool {
	for _, h := range set {
		if strings.EqualFold(h.GetName(), name) {
			return true
		}
	}
	return false
}

// okResponse answers OK with c.okResp.
func (c *checkCall) okResponse() *authv3.CheckResponse {
	c.ok.OkResponse = &c.okResp
	c.resp.Status = okStatus
	c.resp.HttpResponse = &c.ok
	return &c.resp
}

// deniedResponse builds a denial with a generic JSON body.
func (c *checkCall) deniedResponse(code codes.Code, httpStatus int, headers []*wardenv1.Header) *authv3.CheckResponse {
	n := len(headers)
	ptrs := make([]*corev3.HeaderValueOption, 0, n+2)
	ptrs = append(ptrs, jsonContentType)
	if n > 0 {
		opts := make([]headerOption, n)
		for i, h := range headers {
			opts[i].set(h.GetName(), h.GetValue())
			ptrs = append(ptrs, &opts[i].opt)
		}
	}
	if httpStatus == 503 && !hasHeader(headers, "retry-after") {
		ptrs = append(ptrs, retryAfterOne)
	}
	d := new(deniedParts)
	d.httpSt.Code = typev3.StatusCode(httpStatus)
	d.denied.Status = &d.httpSt
	d.denied.Headers = ptrs
	d.denied.Body = deniedBody(httpStatus)
	d.deny.DeniedResponse = &d.denied
	c.resp.Status = deniedStatus(code)
	c.resp.HttpResponse = &d.deny
	return &c.resp
}

// hasHeader reports whether headers has one named name (lower case).
func hasHeader(headers []*wardenv1.Header, name string) bool {
	for _, h := range headers {
		if strings.EqualFold(h.GetName(), name) {
			return true
		}
	}
	return false
}

// deniedBody is the client's body: a status and a generic message, never Warden's reason.
func deniedBody(httpStatus int) string {
	switch httpStatus {
	case 200:
		return `{"status":200,"message":"already processed"}`
	case 409:
		return `{"status":409,"message":"already processed"}`
	case 400:
		return `{"status":400,"message":"bad request"}`
	case 401:
		return `{"status":401,"message":"authentication required"}`
	case 404:
		return `{"status":404,"message":"not found"}`
	case 429:
		return `{"status":429,"message":"too many requests"}`
	case 503:
		return `{"status":503,"message":"service unavailable"}`
	}
	return `{"status":403,"message":"forbidden"}`
}
