package envoy

import (
	"bytes"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/idheader"
)

// adapterAnswers are the answers the adapter builds (allows with and without headers, every
// denial it sends, the fail-open allow), each as its own message.
func adapterAnswers() map[string]*authv3.CheckResponse {
	allowed := &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200,
		UpstreamHeaders: []*wardenv1.Header{
			{Name: "x-warden-subject", Value: "user-17"}, {Name: "x-warden-tenant", Value: "acme"},
			{Name: "x-warden-roles", Value: "user"}, {Name: "x-warden-auth-method", Value: "api_key"},
			{Name: "x-warden-credential-id", Value: "4fJk2LmN8pQr"},
		},
		UpstreamHeadersToRemove: []string{"x-warden-scopes", "x-warden-tier"},
		ResponseHeaders: []*wardenv1.Header{
			{Name: "RateLimit-Policy", Value: `"per_user";q=100000;w=1`}, {Name: "RateLimit", Value: `"per_user";r=99999;t=1`},
		},
	}
	long := &wardenv1.CheckResponse{Allowed: true, UpstreamHeaders: []*wardenv1.Header{{Name: "x-long", Value: string(bytes.Repeat([]byte("v"), 300))}},
		UpstreamHeadersToRemove: []string{""}, ResponseHeaders: []*wardenv1.Header{{Name: "x-é", Value: "ü"}}}
	many := &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200}
	for range 20 { // more than the call's own header options, and above the pooling threshold
		many.UpstreamHeaders = append(many.UpstreamHeaders, &wardenv1.Header{Name: "x-a", Value: string(bytes.Repeat([]byte("a"), 100))})
	}
	c := func() *checkCall { return &checkCall{identity: &defaultIdentity} }
	failOpen := c()
	failOpen.http.Headers = map[string]string{"x-warden-subject": "forged"}
	failOpen.okResp.Headers = []*corev3.HeaderValueOption{failureModeAllowed}
	names := idheader.Names()
	failOpen.okResp.HeadersToRemove = failOpen.withClientIdentity(names[:], nil)
	return map[string]*authv3.CheckResponse{
		"allowed":            c().response(allowed),
		"allowed, no header": c().response(&wardenv1.CheckResponse{Allowed: true}),
		"allowed, long":      c().response(long),
		"allowed, many":      c().response(many),
		"unauthenticated": c().response(&wardenv1.CheckResponse{HttpStatus: 401, ResponseHeaders: []*wardenv1.Header{
			{Name: "WWW-Authenticate", Value: `Bearer realm="warden", error="invalid_token"`}}}),
		"forbidden":     c().response(&wardenv1.CheckResponse{}),
		"rate limited":  c().response(&wardenv1.CheckResponse{HttpStatus: 429, ResponseHeaders: allowed.ResponseHeaders}),
		"unavailable":   c().response(&wardenv1.CheckResponse{HttpStatus: 503}),
		"replayed":      c().response(&wardenv1.CheckResponse{HttpStatus: 200}),
		"bad request":   c().deniedResponse(codes.InvalidArgument, 400, nil),
		"fail open":     failOpen.okResponse(),
		"custom status": c().deniedResponse(codes.Code(99), 418, nil),
	}
}

// otherAnswers are answers with what the adapter never sets: the fast path leaves each to
// the standard codec (fast false), or writes it (fast true).
func otherAnswers() map[string]struct {
	r    *authv3.CheckResponse
	fast bool
} {
	ok := func(o *authv3.OkHttpResponse) *authv3.CheckResponse {
		return &authv3.CheckResponse{Status: &rpcstatus.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: o}}
	}
	opt := func(h *corev3.HeaderValue) *corev3.HeaderValueOption { return &corev3.HeaderValueOption{Header: h} }
	detail, err := anypb.New(&errdetails.RetryInfo{})
	if err != nil {
		panic(err)
	}
	withUnknown := &corev3.HeaderValue{Key: "a", Value: "b"}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
	return map[string]struct {
		r    *authv3.CheckResponse
		fast bool
	}{
		"empty":              {&authv3.CheckResponse{}, true},
		"empty status":       {&authv3.CheckResponse{Status: &rpcstatus.Status{}}, true},
		"negative code":      {&authv3.CheckResponse{Status: &rpcstatus.Status{Code: -3, Message: "m"}}, true},
		"empty ok":           {ok(&authv3.OkHttpResponse{}), true},
		"empty option":       {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{{}}}), true},
		"raw value":          {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(&corev3.HeaderValue{Key: "k", RawValue: []byte{0xff, 0}})}}), true},
		"keep empty, action": {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "k"}, KeepEmptyValue: true, AppendAction: -1}}}), true},
		"error response": {&authv3.CheckResponse{Status: &rpcstatus.Status{Code: 14}, HttpResponse: &authv3.CheckResponse_ErrorResponse{
			ErrorResponse: &authv3.DeniedHttpResponse{Status: &typev3.HttpStatus{}, Body: "b"}}}, true},
		"append":              {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "k"}, Append: wrapperspb.Bool(true)}}}), false},
		"nil option":          {ok(&authv3.OkHttpResponse{ResponseHeadersToAdd: []*corev3.HeaderValueOption{nil}}), false},
		"nil ok":              {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{}}, false},
		"nil denied":          {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{}}, false},
		"query parameters":    {ok(&authv3.OkHttpResponse{QueryParametersToRemove: []string{"q"}}), false},
		"query parameter set": {ok(&authv3.OkHttpResponse{QueryParametersToSet: []*corev3.QueryParameter{{Key: "q"}}}), false},
		//lint:ignore SA1019 deprecated, but proto.Marshal writes it when set
		"ok metadata":       {ok(&authv3.OkHttpResponse{DynamicMetadata: &structpb.Struct{}}), false},
		"metadata":          {&authv3.CheckResponse{DynamicMetadata: &structpb.Struct{}}, false},
		"status details":    {&authv3.CheckResponse{Status: &rpcstatus.Status{Details: []*anypb.Any{detail}}}, false},
		"unknown field":     {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(withUnknown)}}), false},
		"not UTF-8 value":   {ok(&authv3.OkHttpResponse{Headers: []*corev3.HeaderValueOption{opt(&corev3.HeaderValue{Key: "k", Value: "\xff"})}}), false},
		"not UTF-8 removed": {ok(&authv3.OkHttpResponse{HeadersToRemove: []string{"\xff"}}), false},
		"not UTF-8 body":    {&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{Body: "\xc3"}}}, false},
	}
}

// checkMarshalAsProto checks that Codec.Marshal gives what the standard codec gives: the same
// bytes, or an error for an error. It reports whether the fast path took r.
func checkMarshalAsProto(t *testing.T, r *authv3.CheckResponse) bool {
	t.Helper()
	want, wantErr := proto.Marshal(r)
	got, err := Codec{}.Marshal(r)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("got error %v, want %v", err, wantErr)
	}
	if err == nil {
		if b := got.Materialize(); !bytes.Equal(b, want) {
			t.Fatalf("got  %x\nwant %x", b, want)
		}
		got.Free()
	}
	_, fast := marshalCheckResponse(r)
	return fast
}

// TestMarshalCheckResponseAsProto: the codec writes the bytes proto.Marshal writes, through the
// fast path for every answer the adapter builds, and through the standard codec for an answer
// with a field the fast path does not write.
func TestMarshalCheckResponseAsProto(t *testing.T) {
	if !fastMarshal {
		t.Fatal("fastMarshal is false: Envoy's answer messages have fields the fast encoder does not know (a new go-control-plane?); teach it them")
	}
	for name, r := range adapterAnswers() {
		t.Run(name, func(t *testing.T) {
			if !checkMarshalAsProto(t, r) {
				t.Error("the fast path did not take an answer of the adapter's")
			}
		})
	}
	for name, tc := range otherAnswers() {
		t.Run(name, func(t *testing.T) {
			if got := checkMarshalAsProto(t, tc.r); got != tc.fast {
				t.Errorf("fast path taken: got %v, want %v", got, tc.fast)
			}
		})
	}
}

// FuzzMarshalCheckResponse: whatever answer b decodes to, the codec marshals it as
// proto.Marshal does.
func FuzzMarshalCheckResponse(f *testing.F) {
	for _, r := range adapterAnswers() {
		f.Add(marshal(f, r))
	}
	for _, tc := range otherAnswers() {
		if b, err := proto.Marshal(tc.r); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(authv3.CheckResponse)
		if proto.Unmarshal(b, r) != nil {
			return
		}
		checkMarshalAsProto(t, r)
	})
}

func BenchmarkMarshalCheckResponse(b *testing.B) {
	r := adapterAnswers()["allowed"]
	for _, v := range []struct {
		name    string
		marshal func(any) error
	}{
		{"proto", func(v any) error { d, err := standard.Marshal(v); d.Free(); return err }},
		{"fast", func(v any) error { d, err := Codec{}.Marshal(v); d.Free(); return err }},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.marshal(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
