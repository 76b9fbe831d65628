// Package envoytest plays Envoy's part in tests of the ext_authz adapter: it builds
// CheckRequests the way Envoy's ext_authz filter builds them, and applies the answers to a
// request's headers the way the filter applies them, so that a test can say what the upstream
// and the client would see. It is for tests only; it knows nothing of Warden's decisions.
//
//	req := envoytest.Request{Method: "GET", Path: "/v1/orders?limit=10", Host: "api",
//		Headers: [][2]string{{"authorization", "Bearer " + key}}}
//	resp, err := authClient.Check(ctx, req.CheckRequest())
//	up, err := envoytest.Upstream(req, resp) // the headers the upstream receives
package envoytest

import (
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Request is one downstream HTTP request as the ext_authz filter sees it. The zero value is a
// request with no method or path; set at least Method, Path and Host.
type Request struct {
	Method, Path, Host string
	// Headers in arrival order, names as the client sent them.
	Headers [][2]string
	// Body is sent when not nil (with_request_body): in raw_body with PackAsBytes, else in body.
	Body        []byte
	PackAsBytes bool
	// RawHeaders lists the headers one by one in header_map (encode_raw_headers: true).
	RawHeaders bool
	// Principal and Certificate describe the downstream TLS peer: source.principal and
	// source.certificate (already URL-encoded: see EncodeCertificate).
	Principal, Certificate string
	// Context is the route's context_extensions.
	Context map[string]string
}

// CheckRequest builds the CheckRequest exactly as Envoy's ext_authz filter does
// (source/extensions/filters/common/ext_authz/check_request_utils.cc): pseudo-headers in the
// headers map, header names lower case (HTTP/2 and Envoy's HTTP/1 codec lower-case them),
// repeated headers joined with "," (or listed one by one in header_map with
// encode_raw_headers), :path with its query, the body in body or raw_body (pack_as_bytes) with
// x-envoy-auth-partial-body, the source principal and certificate, and the route's
// context_extensions.
func (r Request) CheckRequest() *authv3.CheckRequest {
	all := append([][2]string{{":method", r.Method}, {":path", r.Path}, {":authority", r.Host}, {":scheme", "https"}}, r.Headers...)
	h := &authv3.AttributeContext_HttpRequest{
		Id: "1", Method: r.Method, Path: r.Path, Host: r.Host, Scheme: "https", Protocol: "HTTP/2",
	}
	if r.RawHeaders {
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
	if r.Body != nil {
		if r.PackAsBytes {
			h.RawBody = r.Body
		} else {
			h.Body = string(r.Body)
		}
		if r.RawHeaders {
			h.HeaderMap.Headers = append(h.HeaderMap.Headers, &corev3.HeaderValue{Key: "x-envoy-auth-partial-body", RawValue: []byte("false")})
		} else {
			h.Headers["x-envoy-auth-partial-body"] = "false"
		}
		h.Size = int64(len(r.Body))
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:     socket("127.0.0.1", 40000),
			Principal:   r.Principal,
			Certificate: r.Certificate,
		},
		Destination:       &authv3.AttributeContext_Peer{Address: socket("127.0.0.1", 8443)},
		Request:           &authv3.AttributeContext_Request{Http: h},
		ContextExtensions: r.Context,
	}}
}

func socket(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// EncodeCertificate URL-encodes a PEM certificate as Envoy does for source.certificate
// (urlEncodedPemEncodedPeerCertificate: newline, space, "+", "/" and "=" percent-encoded).
// Envoy sends the leaf only, never the chain.
func EncodeCertificate(pem []byte) string {
	return certEncoder.Replace(string(pem))
}

var certEncoder = strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D")

// Upstream applies an OK response to the request's headers as the ext_authz filter does, and
// returns the headers the upstream receives (lower-case names, values in order). It fails if
// resp is not an OK response or a header option has an append action Envoy would not apply as
// a replacement or an append.
func Upstream(r Request, resp *authv3.CheckResponse) (map[string][]string, error) {
	ok := resp.GetOkResponse()
	if ok == nil {
		return nil, fmt.Errorf("not an OK response: %v", resp)
	}
	out := map[string][]string{}
	for _, kv := range r.Headers {
		k := strings.ToLower(kv[0])
		out[k] = append(out[k], kv[1])
	}
	var errs []error
	for _, h := range ok.GetHeaders() {
		k := strings.ToLower(h.GetHeader().GetKey())
		switch h.GetAppendAction() {
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			out[k] = []string{h.GetHeader().GetValue()}
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			out[k] = append(out[k], h.GetHeader().GetValue())
		default:
			errs = append(errs, fmt.Errorf("header %s: unexpected append action %v", k, h.GetAppendAction()))
		}
	}
	for _, k := range ok.GetHeadersToRemove() {
		delete(out, strings.ToLower(k))
	}
	return out, errors.Join(errs...)
}

// ClientHeader returns the value of a header sent to the client: a denied response's headers,
// or an OK response's response_headers_to_add. "" if there is none.
func ClientHeader(resp *authv3.CheckResponse, name string) string {
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
