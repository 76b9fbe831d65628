package envoy

import (
	"sync"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fast encoder of ext_authz answers (marshalCheckResponse) writes the fields the adapter
// sets, in field-number order as proto.Marshal does, and gives up on anything else: a field
// it does not write (dynamic metadata, query parameters, append, status details, ...),
// unknown fields, a nil element of a repeated field, a string that is not UTF-8 (which
// proto.Marshal refuses). It gives up on every answer when Envoy's messages have fields it
// does not know (a newer go-control-plane): fastMarshal.
//
// Field numbers: envoy/service/auth/v3/external_auth.proto, envoy/config/core/v3/base.proto,
// envoy/type/v3/http_status.proto, google/rpc/status.proto.
const (
	numCheckResponseStatus = 1 // google.rpc.Status
	numCheckResponseDenied = 2 // DeniedHttpResponse, oneof http_response
	numCheckResponseOK     = 3 // OkHttpResponse, oneof http_response
	numCheckResponseError  = 5 // DeniedHttpResponse, oneof http_response

	numStatusCode    = 1
	numStatusMessage = 2

	numOkHeaders              = 2
	numOkHeadersToRemove      = 5
	numOkResponseHeadersToAdd = 6

	numDeniedStatus  = 1 // envoy.type.v3.HttpStatus{code = 1}
	numDeniedHeaders = 2
	numDeniedBody    = 3

	numOptionHeader         = 1 // HeaderValue
	numOptionAppendAction   = 3
	numOptionKeepEmptyValue = 4

	numHeaderKey      = 1
	numHeaderValue    = 2
	numHeaderRawValue = 3

	numHttpStatusCode = 1
)

// fastMarshal is whether Envoy's answer messages have exactly the fields the fast encoder
// knows (those it writes and those it gives up on when set): with another version of
// go-control-plane, a field it would not see could be set.
var fastMarshal = knownFields((*authv3.CheckResponse)(nil), 1, 2, 3, 4, 5) &&
	knownFields((*authv3.OkHttpResponse)(nil), 2, 3, 5, 6, 7, 8) &&
	knownFields((*authv3.DeniedHttpResponse)(nil), 1, 2, 3) &&
	knownFields((*corev3.HeaderValueOption)(nil), 1, 2, 3, 4) &&
	knownFields((*corev3.HeaderValue)(nil), 1, 2, 3) &&
	knownFields((*typev3.HttpStatus)(nil), 1) &&
	knownFields((*rpcstatus.Status)(nil), 1, 2, 3)

// knownFields reports whether m's message has exactly the fields nums.
func knownFields(m proto.Message, nums ...protoreflect.FieldNumber) bool {
	fs := m.ProtoReflect().Descriptor().Fields()
	if fs.Len() != len(nums) {
		return false
	}
	for _, n := range nums {
		if fs.ByNumber(n) == nil {
			return false
		}
	}
	return true
}

// marshalCheckResponse is proto.Marshal(r), with the same bytes, for the answers the adapter
// builds; ok is false for any other (see fastMarshal), which the caller marshals with the
// standard codec.
func marshalCheckResponse(r *authv3.CheckResponse) (data mem.BufferSlice, ok bool) {
	if !fastMarshal || !validCheckResponse(r) {
		return nil, false
	}
	n := sizeCheckResponse(r)
	// In a pooled buffer, which gRPC hands back (mem.Buffer.Free) once it has sent the bytes.
	pool := mem.DefaultBufferPool()
	if n <= answerBufSize {
		pool = &answerBufs
	}
	buf := pool.Get(n)
	*buf = appendCheckResponse((*buf)[:0], r)
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, true
}

// answerBufs holds the buffers of marshalled answers of up to answerBufSize bytes (all but
// unusual ones): the standard codec writes an answer below mem's pooling threshold (1 KiB)
// into a fresh buffer, and the default pool's smallest buffers are below that threshold too,
// so that mem.NewBuffer would not hand them back.
var answerBufs answerBufferPool

// answerBufSize is the capacity of answerBufs' buffers: above mem's pooling threshold.
const answerBufSize = 2048

// answerBufferPool is a mem.BufferPool of buffers of answerBufSize bytes. Get does not clear
// them: marshalCheckResponse writes every byte it returns.
type answerBufferPool struct{ p sync.Pool }

func (p *answerBufferPool) Get(n int) *[]byte {
	if b, ok := p.p.Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, answerBufSize)
	return &b
}

func (p *answerBufferPool) Put(b *[]byte) { p.p.Put(b) }

// The valid functions report whether the fast encoder writes a message as proto.Marshal
// would; the size functions give the size of a valid message, the append functions write it.

// unknown reports whether m holds unknown fields (which proto.Marshal writes).
func unknown(m proto.Message) bool { return len(m.ProtoReflect().GetUnknown()) > 0 }

// validString reports whether s may be a proto3 string field (proto.Marshal refuses
// invalid UTF-8).
func validString(s string) bool { return utf8.ValidString(s) }

func validCheckResponse(r *authv3.CheckResponse) bool {
	if r.DynamicMetadata != nil || unknown(r) {
		return false
	}
	if s := r.Status; s != nil && (len(s.Details) > 0 || unknown(s) || !validString(s.Message)) {
		return false
	}
	switch h := r.HttpResponse.(type) {
	case nil:
		return true
	case *authv3.CheckResponse_OkResponse:
		// A oneof member set to nil is left to proto.Marshal, as everything unusual.
		return h.OkResponse != nil && validOK(h.OkResponse)
	case *authv3.CheckResponse_DeniedResponse:
		return h.DeniedResponse != nil && validDenied(h.DeniedResponse)
	case *authv3.CheckResponse_ErrorResponse:
		return h.ErrorResponse != nil && validDenied(h.ErrorResponse)
	}
	return false
}

func validOK(o *authv3.OkHttpResponse) bool {
	//lint:ignore SA1019 deprecated, but proto.Marshal writes it when set
	if o.DynamicMetadata != nil || len(o.QueryParametersToSet) > 0 || len(o.QueryParametersToRemove) > 0 || unknown(o) {
		return false
	}
	for _, h := range o.HeadersToRemove {
		if !validString(h) {
			return false
		}
	}
	return validOptions(o.Headers) && validOptions(o.ResponseHeadersToAdd)
}

func validDenied(d *authv3.DeniedHttpResponse) bool {
	return !unknown(d) && (d.Status == nil || !unknown(d.Status)) && validOptions(d.Headers) && validString(d.Body)
}

func validOptions(os []*corev3.HeaderValueOption) bool {
	for _, o := range os {
		//lint:ignore SA1019 deprecated, but proto.Marshal writes it when set
		if o == nil || o.Append != nil || unknown(o) {
			return false
		}
		if h := o.Header; h != nil && (unknown(h) || !validString(h.Key) || !validString(h.Value)) {
			return false
		}
	}
	return true
}

// sizeField is the size of a length-delimited field of n bytes (field numbers below 16: a
// one-byte tag).
func sizeField(n int) int {
	if n < 0x80 {
		return 2 + n
	}
	return 1 + protowire.SizeVarint(uint64(n)) + n
}

// sizeString is the size of a proto3 string field: none when empty.
func sizeString(s string) int {
	if s == "" {
		return 0
	}
	return sizeField(len(s))
}

// sizeVarint is the size of a proto3 int32 or enum field: none when zero.
func sizeVarint(x int32) int {
	switch {
	case x == 0:
		return 0
	case x > 0 && x < 0x80:
		return 2
	}
	return 1 + protowire.SizeVarint(uint64(int64(x)))
}

// appendLen appends the tag of length-delimited field num (below 16) and the length n.
func appendLen(b []byte, num protowire.Number, n int) []byte {
	if n < 0x80 {
		return append(b, byte(num)<<3|byte(protowire.BytesType), byte(n))
	}
	return protowire.AppendVarint(append(b, byte(num)<<3|byte(protowire.BytesType)), uint64(n))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return append(appendLen(b, num, len(s)), s...)
}

func appendVarint(b []byte, num protowire.Number, x int32) []byte {
	switch {
	case x == 0:
		return b
	case x > 0 && x < 0x80:
		return append(b, byte(num)<<3|byte(protowire.VarintType), byte(x))
	}
	return protowire.AppendVarint(append(b, byte(num)<<3|byte(protowire.VarintType)), uint64(int64(x)))
}

func sizeCheckResponse(r *authv3.CheckResponse) int {
	n := 0
	if s := r.Status; s != nil {
		n += sizeField(sizeStatus(s))
	}
	switch h := r.HttpResponse.(type) {
	case *authv3.CheckResponse_OkResponse:
		n += sizeField(sizeOK(h.OkResponse))
	case *authv3.CheckResponse_DeniedResponse:
		n += sizeField(sizeDenied(h.DeniedResponse))
	case *authv3.CheckResponse_ErrorResponse:
		n += sizeField(sizeDenied(h.ErrorResponse))
	}
	return n
}

func appendCheckResponse(b []byte, r *authv3.CheckResponse) []byte {
	if s := r.Status; s != nil {
		b = appendLen(b, numCheckResponseStatus, sizeStatus(s))
		b = appendVarint(b, numStatusCode, s.Code)
		b = appendString(b, numStatusMessage, s.Message)
	}
	switch h := r.HttpResponse.(type) {
	case *authv3.CheckResponse_OkResponse:
		b = appendLen(b, numCheckResponseOK, sizeOK(h.OkResponse))
		b = appendOK(b, h.OkResponse)
	case *authv3.CheckResponse_DeniedResponse:
		b = appendLen(b, numCheckResponseDenied, sizeDenied(h.DeniedResponse))
		b = appendDenied(b, h.DeniedResponse)
	case *authv3.CheckResponse_ErrorResponse:
		b = appendLen(b, numCheckResponseError, sizeDenied(h.ErrorResponse))
		b = appendDenied(b, h.ErrorResponse)
	}
	return b
}

func sizeStatus(s *rpcstatus.Status) int { return sizeVarint(s.Code) + sizeString(s.Message) }

func sizeOK(o *authv3.OkHttpResponse) int {
	n := sizeOptions(o.Headers) + sizeOptions(o.ResponseHeadersToAdd)
	for _, h := range o.HeadersToRemove {
		n += sizeField(len(h)) // a repeated string's empty elements are written too
	}
	return n
}

func appendOK(b []byte, o *authv3.OkHttpResponse) []byte {
	b = appendOptions(b, numOkHeaders, o.Headers)
	for _, h := range o.HeadersToRemove {
		b = append(appendLen(b, numOkHeadersToRemove, len(h)), h...) // empty ones too
	}
	return appendOptions(b, numOkResponseHeadersToAdd, o.ResponseHeadersToAdd)
}

func sizeDenied(d *authv3.DeniedHttpResponse) int {
	n := sizeOptions(d.Headers) + sizeString(d.Body)
	if st := d.Status; st != nil {
		n += sizeField(sizeVarint(int32(st.Code)))
	}
	return n
}

func appendDenied(b []byte, d *authv3.DeniedHttpResponse) []byte {
	if st := d.Status; st != nil {
		b = appendLen(b, numDeniedStatus, sizeVarint(int32(st.Code)))
		b = appendVarint(b, numHttpStatusCode, int32(st.Code))
	}
	b = appendOptions(b, numDeniedHeaders, d.Headers)
	return appendString(b, numDeniedBody, d.Body)
}

// sizeOptions is the size of a repeated HeaderValueOption field holding os.
func sizeOptions(os []*corev3.HeaderValueOption) int {
	n := 0
	for _, o := range os {
		n += sizeField(sizeOption(o))
	}
	return n
}

func appendOptions(b []byte, num protowire.Number, os []*corev3.HeaderValueOption) []byte {
	for _, o := range os {
		b = appendLen(b, num, sizeOption(o))
		if h := o.Header; h != nil {
			b = appendLen(b, numOptionHeader, sizeHeader(h))
			b = appendString(b, numHeaderKey, h.Key)
			b = appendString(b, numHeaderValue, h.Value)
			if len(h.RawValue) > 0 {
				b = append(appendLen(b, numHeaderRawValue, len(h.RawValue)), h.RawValue...)
			}
		}
		b = appendVarint(b, numOptionAppendAction, int32(o.AppendAction))
		if o.KeepEmptyValue {
			b = append(b, byte(numOptionKeepEmptyValue)<<3|byte(protowire.VarintType), 1)
		}
	}
	return b
}

func sizeOption(o *corev3.HeaderValueOption) int {
	n := sizeVarint(int32(o.AppendAction))
	if o.KeepEmptyValue {
		n += 2
	}
	if h := o.Header; h != nil {
		n += sizeField(sizeHeader(h))
	}
	return n
}

func sizeHeader(h *corev3.HeaderValue) int {
	n := sizeString(h.Key) + sizeString(h.Value)
	if len(h.RawValue) > 0 { // bytes: any bytes are valid
		n += sizeField(len(h.RawValue))
	}
	return n
}
