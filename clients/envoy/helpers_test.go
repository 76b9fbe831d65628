package envoy_test

import (
	"context"
	"net"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/wardenhq/warden/clients/envoy"
)

// serveEnvoy runs the adapters on a real gRPC server over an in-memory connection and returns
// the clients Envoy would use.
func serveEnvoy(t *testing.T, auth *envoy.AuthServer, rls *envoy.RateLimitServer) (authv3.AuthorizationClient, rlsv3.RateLimitServiceClient) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	if auth != nil {
		authv3.RegisterAuthorizationServer(gs, auth)
	}
	if rls != nil {
		rlsv3.RegisterRateLimitServiceServer(gs, rls)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return authv3.NewAuthorizationClient(cc), rlsv3.NewRateLimitServiceClient(cc)
}

// envoyRequest is one downstream HTTP request, as the ext_authz filter sees it.
type envoyRequest struct {
	method, path, host string
	headers            [][2]string // in arrival order, names as sent
	body               []byte
	packAsBytes        bool
	rawHeaders         bool // encode_raw_headers
	principal, cert    string
	context            map[string]string
}

// build makes the CheckRequest exactly as Envoy's ext_authz filter does
// (source/extensions/filters/common/ext_authz/check_request_utils.cc): pseudo-headers in the
// headers map, header names lower case (HTTP/2 and Envoy's HTTP/1 codec lower-case them),
// repeated headers joined with "," (or listed one by one in header_map with
// encode_raw_headers), :path with its query, the body in body or raw_body (pack_as_bytes) with
// x-envoy-auth-partial-body, the source principal and URL-encoded certificate, and the route's
// context_extensions.
func (r envoyRequest) build() *authv3.CheckRequest {
	all := append([][2]string{{":method", r.method}, {":path", r.path}, {":authority", r.host}, {":scheme", "https"}}, r.headers...)
	h := &authv3.AttributeContext_HttpRequest{
		Id: "1", Method: r.method, Path: r.path, Host: r.host, Scheme: "https", Protocol: "HTTP/2",
	}
	if r.rawHeaders {
		h.HeaderMap = &corev3.HeaderMap{}
		for _, kv := range all {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: strings.ToLower(kv[0]), RawValue: []byte(kv[1])})
		}
	} else {
		h.Headers = map[string]string{}
		for _, kv := range all {
			k := strings.ToLower(kv[0])
			if prev, ok := h.Headers[k]; ok {
				h.Headers[k] = prev + "," + kv[1]
			} else {
				h.Headers[k] = kv[1]
			}
		}
	}
	if r.body != nil {
		if r.packAsBytes {
			h.RawBody = r.body
		} else {
			h.Body = string(r.body)
		}
		if r.rawHeaders {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "x-envoy-auth-partial-body", RawValue: []byte("false")})
		} else {
			h.Headers["x-envoy-auth-partial-body"] = "false"
		}
		h.Size = int64(len(r.body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:     &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}}}},
			Principal:   r.principal,
			Certificate: r.cert,
		},
		Destination:       &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8443}}}}},
		Request:           &authv3.AttributeContext_Request{Http: h},
		ContextExtensions: r.context,
	}}
}

// upstream applies an OK response to the request's headers as Envoy's ext_authz filter does,
// and returns the headers the upstream receives (lower-case names, one value each).
func upstream(t *testing.T, r envoyRequest, resp *authv3.CheckResponse) map[string][]string {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not an OK response: %v", resp)
	}
	out := map[string][]string{}
	for _, kv := range r.headers {
		k := strings.ToLower(kv[0])
		out[k] = append(out[k], kv[1])
	}
	for _, h := range ok.GetHeaders() {
		k := strings.ToLower(h.GetHeader().GetKey())
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			out[k] = []string{h.GetHeader().GetValue()}
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			out[k] = append(out[k], h.GetHeader().GetValue())
		default:
			t.Errorf("header %s: unexpected append action %v", k, h.GetAppendAction())
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(out, strings.ToLower(k))
	}
	return out
}

// header returns a denied or OK response's header value sent to the client.
func clientHeader(resp *authv3.CheckResponse, name string) string {
	var hs []*corev3.HeaderValueOption
	if d := resp.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	} else {
		hs = resp.GetOkResponse().GetResponseHeadersToAdd()
	}
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), name) {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
