package envoy

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Checker decides on one request: *service.Server in process, or a
// wardenv1.WardenServiceClient (whose Check also takes grpc.CallOptions) remotely. A gRPC error
// means Warden could not decide.
type Checker interface {
	Check(ctx context.Context, req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error)
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
)

// ParseFailureMode parses "closed" or "open".
func ParseFailureMode(s string) (FailureMode, bool) {
	switch s {
	case "closed":
		return FailClosed, true
	case "open":
		return FailOpen, true
	}
	return 0, false
}

func (m FailureMode) String() string {
	if m == FailOpen {
		return "open"
	}
	return "closed"
}

// ContextKeyFailureMode is the context_extensions key with which an Envoy route (or virtual
// host) overrides the failure mode: "open" or "closed". Set it in the route's
// typed_per_filter_config for envoy.filters.http.ext_authz (check_settings.context_extensions).
const ContextKeyFailureMode = "warden_failure_mode"

// IdentityHeaders are the headers Warden sets on the upstream request when it allows one (the
// names service.Check uses). On fail-open they are removed instead.
var IdentityHeaders = []string{
	"x-warden-subject", "x-warden-tenant", "x-warden-roles", "x-warden-scopes",
	"x-warden-auth-method", "x-warden-credential-id", "x-warden-tier",
}

// AuthConfig configures an AuthServer. The zero value is usable: fail closed, logs discarded.
type AuthConfig struct {
	// Disabled makes Check answer UNIMPLEMENTED (config: envoy.ext_authz.enabled false).
	Disabled bool
	// FailureMode applies when Warden cannot decide. Default FailClosed.
	FailureMode FailureMode
	// IdentityHeaders are removed from the upstream request on fail-open. Default
	// IdentityHeaders.
	IdentityHeaders []string
	// Logger receives the errors that triggered the failure mode. Default: discard.
	Logger *slog.Logger
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
	if cfg.IdentityHeaders == nil {
		cfg.IdentityHeaders = IdentityHeaders
	}
	s.cfg.Store(&cfg)
}

// Check answers one ext_authz request.
func (s *AuthServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	cfg := s.cfg.Load()
	if cfg.Disabled {
		return nil, status.Error(codes.Unimplemented, "ext_authz is not enabled on this Warden (config: envoy.ext_authz.enabled)")
	}
	wreq := CheckRequestFromEnvoy(req)
	resp, err := s.checker.Check(ctx, wreq)
	if err != nil {
		return s.failure(ctx, cfg, req, err), nil
	}
	return CheckResponseToEnvoy(resp), nil
}

// failure answers when Warden could not decide: a malformed request is denied with 400 whatever
// the mode, and so is, with 503, a Warden that cannot decide at all (UNIMPLEMENTED: no route
// table, no authn section), so that a configuration mistake never opens every route; otherwise
// the failure mode (the route's, else the adapter's) applies.
func (s *AuthServer) failure(ctx context.Context, cfg *AuthConfig, req *authv3.CheckRequest, err error) *authv3.CheckResponse {
	st := status.Convert(err)
	switch st.Code() {
	case codes.InvalidArgument:
		return denied(codes.InvalidArgument, 400, nil)
	case codes.Unimplemented:
		cfg.Logger.LogAttrs(ctx, slog.LevelError, "ext_authz: Warden is not configured to decide this request; denying",
			slog.String("error", st.Message()))
		return denied(codes.Unavailable, 503, nil)
	}
	mode := cfg.FailureMode
	if m, ok := ParseFailureMode(req.GetAttributes().GetContextExtensions()[ContextKeyFailureMode]); ok {
		mode = m
	}
	cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "ext_authz: Warden could not decide; applying the failure mode",
		slog.String("failure_mode", mode.String()), slog.String("code", st.Code().String()), slog.String("error", st.Message()))
	if mode == FailOpen {
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers:         []*corev3.HeaderValueOption{overwrite("x-envoy-auth-failure-mode-allowed", "true")},
				HeadersToRemove: cfg.IdentityHeaders,
			}},
		}
	}
	return denied(codes.Unavailable, 503, nil)
}

// CheckRequestFromEnvoy maps an ext_authz request to a Warden Check request, reading the fields
// as Envoy's filter fills them (source/extensions/filters/common/ext_authz/check_request_utils.cc,
// CheckRequestUtils::setHttpRequest and setAttrContextPeer):
//
//   - method, host (the :authority) and path from attributes.request.http; the path is the
//     :path header with its query string, which is split off;
//   - headers: the headers map (names already lower case, repeated headers joined with ","),
//     or header_map when the filter sets encode_raw_headers; pseudo-headers (":path", ...) are
//     dropped, names are lower-cased;
//   - the body (with_request_body): raw_body when pack_as_bytes is set, else body. Envoy marks
//     a truncated body with x-envoy-auth-partial-body: true; such a body fails a webhook
//     signature check, as it should;
//   - source.principal (URI SAN, else DNS SAN, else subject of the client certificate) and
//     source.certificate (URL-encoded PEM, with include_peer_certificate) as the peer's
//     credentials;
//   - context_extensions as http.context.
//
// The request's headers map is reused, not copied.
func CheckRequestFromEnvoy(req *authv3.CheckRequest) *wardenv1.CheckRequest {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if headers == nil && h.GetHeaderMap() != nil {
		headers = make(map[string]string, len(h.GetHeaderMap().GetHeaders()))
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			k := strings.ToLower(hv.GetKey())
			if prev, ok := headers[k]; ok {
				v = prev + "," + v
			}
			headers[k] = v
		}
	}
	for k, v := range headers {
		switch {
		case k == "" || k[0] == ':':
			delete(headers, k)
		case hasUpper(k):
			delete(headers, k)
			headers[strings.ToLower(k)] = v
		}
	}
	path := h.GetPath()
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	body := h.GetRawBody()
	if len(body) == 0 && h.GetBody() != "" {
		body = []byte(h.GetBody())
	}
	out := &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{
		Method:  h.GetMethod(),
		Path:    path,
		Host:    h.GetHost(),
		Headers: headers,
		Body:    body,
		Context: attrs.GetContextExtensions(),
	}}
	if src := attrs.GetSource(); src.GetPrincipal() != "" || src.GetCertificate() != "" {
		out.Credentials = &wardenv1.Credentials{
			Headers:         headers,
			PeerCertificate: src.GetCertificate(),
			PeerPrincipal:   src.GetPrincipal(),
		}
	}
	return out
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// CheckResponseToEnvoy maps Warden's decision to Envoy's answer. Allowed: an OkHttpResponse
// that sets Warden's upstream headers, replacing (never appending to) any header of the same
// name the client sent, removes upstream_headers_to_remove, and adds the RateLimit headers to
// the client's response. Denied: a DeniedHttpResponse with Warden's HTTP status and response
// headers (WWW-Authenticate, RateLimit*, Retry-After) and a small JSON body with a generic
// message: the detailed reason stays in Warden's logs.
func CheckResponseToEnvoy(r *wardenv1.CheckResponse) *authv3.CheckResponse {
	if r.GetAllowed() {
		ok := &authv3.OkHttpResponse{HeadersToRemove: r.GetUpstreamHeadersToRemove()}
		if n := len(r.GetUpstreamHeaders()); n > 0 {
			ok.Headers = make([]*corev3.HeaderValueOption, n)
			for i, h := range r.GetUpstreamHeaders() {
				ok.Headers[i] = overwrite(h.GetName(), h.GetValue())
			}
		}
		if n := len(r.GetResponseHeaders()); n > 0 {
			ok.ResponseHeadersToAdd = make([]*corev3.HeaderValueOption, n)
			for i, h := range r.GetResponseHeaders() {
				ok.ResponseHeadersToAdd[i] = overwrite(h.GetName(), h.GetValue())
			}
		}
		return &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
	}
	httpStatus := int(r.GetHttpStatus())
	code := codes.PermissionDenied
	switch httpStatus {
	case 401:
		code = codes.Unauthenticated
	case 429:
		code = codes.ResourceExhausted
	case 0:
		httpStatus = 403
	}
	return denied(code, httpStatus, r.GetResponseHeaders())
}

// denied builds a denial with a generic JSON body.
func denied(code codes.Code, httpStatus int, headers []*wardenv1.Header) *authv3.CheckResponse {
	d := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
		Headers: make([]*corev3.HeaderValueOption, 0, len(headers)+1),
		Body:    deniedBody(httpStatus),
	}
	d.Headers = append(d.Headers, overwrite("content-type", "application/json"))
	for _, h := range headers {
		d.Headers = append(d.Headers, overwrite(h.GetName(), h.GetValue()))
	}
	if httpStatus == 503 {
		d.Headers = append(d.Headers, overwrite("retry-after", "1"))
	}
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code), Message: code.String()},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: d},
	}
}

// deniedBody is the client's body: a status and a generic message, never Warden's reason.
func deniedBody(httpStatus int) string {
	switch httpStatus {
	case 200:
		return `{"status":200,"message":"already processed"}`
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

// overwrite sets a header, replacing any value of the same name (Envoy's
// OVERWRITE_IF_EXISTS_OR_ADD; "append" is left unset so that the action applies).
func overwrite(name, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: name, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
