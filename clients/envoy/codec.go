package envoy

import (
	"unicode/utf8"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Codec is the gRPC server codec of a server that serves the ext_authz adapter
// (grpc.ForceServerCodecV2): the standard proto codec, except that an ext_authz
// CheckRequest is decoded by a fast path when it holds only the fields Envoy's filter fills
// (DecodeCheckRequest). Every other message, and every CheckRequest the fast path does not
// take, goes to the standard codec, so the server decodes exactly what it did, with the same
// errors.
//
// The generic decoder spends most of an ext_authz request's decoding on its headers map
// (reflection per entry) and on one allocation per nested message; on Envoy's usual request
// the fast path allocates one block for the nested messages, the map and its strings.
//
// Answers (CheckResponse) take a fast path too (Marshal), with the standard codec's bytes.
type Codec struct{}

// standard is grpc-go's proto codec, registered by its package.
var standard = encoding.GetCodecV2(protoenc.Name)

// Name is the standard codec's: "proto".
func (Codec) Name() string { return protoenc.Name }

// Marshal is the standard codec's, with the same bytes, and faster on the ext_authz answers
// the adapter builds (an allow's headers, a denial's): it writes them with protowire, without
// the generic encoder's reflection and size cache. An answer with anything else set (see
// marshalCheckResponse), and every other message, goes to the standard codec.
//
// Once an answer of an AuthServer with AuthConfig.ReuseAnswers, or of a RateLimitServer with
// RateLimitConfig.ReuseAnswers, is marshalled, its memory is handed back for a later call's
// answer.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch r := v.(type) {
	case *authv3.CheckResponse:
		if r == nil {
			break
		}
		data, ok := marshalCheckResponse(r)
		var err error
		if !ok {
			data, err = standard.Marshal(v)
		}
		authAnswers.marshalled(unsafe.Pointer(r))
		return data, err
	case *rlsv3.RateLimitResponse:
		if r == nil {
			break
		}
		data, err := standard.Marshal(v)
		rlsAnswers.marshalled(unsafe.Pointer(r))
		return data, err
	}
	return standard.Marshal(v)
}

// Unmarshal decodes an ext_authz CheckRequest with DecodeCheckRequest, anything else with the
// standard codec.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*authv3.CheckRequest)
	if !ok {
		return standard.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return DecodeCheckRequest(buf.ReadOnlyData(), r)
}

// DecodeCheckRequest is proto.Unmarshal(b, r), with the same result and the same errors,
// faster on the requests Envoy's ext_authz filter sends: source and destination (socket
// address, service, principal, certificate), the request's time and HTTP fields (headers
// map, body, raw body), and context extensions. A request with anything else (an unknown
// field, metadata, TLS session, labels, header_map, a field given twice where the generic
// decoder would merge, a malformed or non-UTF-8 value, ...) is decoded by proto.Unmarshal.
// Nothing of b is kept: strings and bytes are copied.
func DecodeCheckRequest(b []byte, r *authv3.CheckRequest) error {
	proto.Reset(r)
	if fastCheckRequest(b, r) {
		return nil
	}
	proto.Reset(r)
	return proto.Unmarshal(b, r)
}

// checkRequestBlock holds the nested messages of a decoded request, in one allocation.
type checkRequestBlock struct {
	attrs    authv3.AttributeContext
	req      authv3.AttributeContext_Request
	http     authv3.AttributeContext_HttpRequest
	time     timestamppb.Timestamp
	peers    [2]authv3.AttributeContext_Peer
	addrs    [2]corev3.Address
	sockets  [2]corev3.Address_SocketAddress
	sockAddr [2]corev3.SocketAddress
	ports    [2]corev3.SocketAddress_PortValue
}

// fastCheckRequest decodes b into r (reset) and reports true, or reports false when b holds
// anything it does not decode exactly as proto.Unmarshal would.
func fastCheckRequest(b []byte, r *authv3.CheckRequest) bool {
	blk := new(checkRequestBlock)
	return fields(b, func(num protowire.Number, v []byte) bool {
		if num != 1 || r.Attributes != nil {
			return false // unknown, or given twice: merged
		}
		r.Attributes = &blk.attrs
		return fastAttributes(v, blk)
	})
}

// scan calls varint with each varint field of b and bytes with each length-delimited one,
// in order, and reports whether b held only fields of the kinds given (nil: none) and the
// calls accepted them all.
func scan(b []byte, varint func(num protowire.Number, x uint64) bool, bytes func(num protowire.Number, v []byte) bool) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && varint != nil:
			x, m := protowire.ConsumeVarint(b)
			if m < 0 || !varint(num, x) {
				return false
			}
			b = b[m:]
		case typ == protowire.BytesType && bytes != nil:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 || !bytes(num, v) {
				return false
			}
			b = b[m:]
		default:
			return false
		}
	}
	return true
}

// countFields counts the length-delimited fields numbered num in b (a map's entries), up to
// the first malformed one.
func countFields(b []byte, num protowire.Number) int {
	n := 0
	for len(b) > 0 {
		k, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			break
		}
		if k == num && typ == protowire.BytesType {
			n++
		}
		v := protowire.ConsumeFieldValue(k, typ, b[m:])
		if v < 0 {
			break
		}
		b = b[m+v:]
	}
	return n
}

// fields is scan of a message of length-delimited fields only.
func fields(b []byte, f func(num protowire.Number, v []byte) bool) bool { return scan(b, nil, f) }

// str copies v into a string, refusing invalid UTF-8 (proto3 strings must be valid).
func str(v []byte) (string, bool) {
	if !utf8.Valid(v) {
		return "", false
	}
	return string(v), true
}

func fastAttributes(b []byte, blk *checkRequestBlock) bool {
	a := &blk.attrs
	return fields(b, func(num protowire.Number, v []byte) bool {
		switch num {
		case 1, 2:
			i := int(num) - 1
			if (i == 0 && a.Source != nil) || (i == 1 && a.Destination != nil) {
				return false // given twice: merged
			}
			p := &blk.peers[i]
			if i == 0 {
				a.Source = p
			} else {
				a.Destination = p
			}
			return fastPeer(v, blk, i)
		case 4:
			if a.Request != nil {
				return false
			}
			a.Request = &blk.req
			return fastRequest(v, blk)
		case 10:
			if a.ContextExtensions == nil {
				a.ContextExtensions = make(map[string]string, 2)
			}
			return mapEntry(v, a.ContextExtensions)
		}
		return false
	})
}

func fastPeer(b []byte, blk *checkRequestBlock, i int) bool {
	p := &blk.peers[i]
	return fields(b, func(num protowire.Number, v []byte) bool {
		ok := false
		switch num {
		case 1:
			if p.Address != nil {
				return false
			}
			p.Address = &blk.addrs[i]
			return fastAddress(v, blk, i)
		case 2:
			p.Service, ok = str(v)
		case 4:
			p.Principal, ok = str(v)
		case 5:
			p.Certificate, ok = str(v)
		}
		return ok
	})
}

func fastAddress(b []byte, blk *checkRequestBlock, i int) bool {
	a := &blk.addrs[i]
	return fields(b, func(num protowire.Number, v []byte) bool {
		if num != 1 || a.Address != nil {
			return false // another kind of address, or given twice
		}
		blk.sockets[i].SocketAddress = &blk.sockAddr[i]
		a.Address = &blk.sockets[i]
		return fastSocketAddress(v, blk, i)
	})
}

func fastSocketAddress(b []byte, blk *checkRequestBlock, i int) bool {
	s := &blk.sockAddr[i]
	return scan(b, func(num protowire.Number, x uint64) bool {
		switch num {
		case 1:
			s.Protocol = corev3.SocketAddress_Protocol(int32(x))
		case 3:
			blk.ports[i].PortValue = uint32(x)
			s.PortSpecifier = &blk.ports[i]
		default:
			return false
		}
		return true
	}, func(num protowire.Number, v []byte) bool {
		ok := false
		if num == 2 {
			s.Address, ok = str(v)
		}
		return ok
	})
}

func fastRequest(b []byte, blk *checkRequestBlock) bool {
	r := &blk.req
	return fields(b, func(num protowire.Number, v []byte) bool {
		switch {
		case num == 1 && r.Time == nil:
			r.Time = &blk.time
			return fastTimestamp(v, &blk.time)
		case num == 2 && r.Http == nil:
			r.Http = &blk.http
			return fastHTTP(v, &blk.http)
		}
		return false // unknown, or given twice
	})
}

func fastTimestamp(b []byte, t *timestamppb.Timestamp) bool {
	return scan(b, func(num protowire.Number, x uint64) bool {
		switch num {
		case 1:
			t.Seconds = int64(x)
		case 2:
			t.Nanos = int32(x)
		default:
			return false
		}
		return true
	}, nil)
}

func fastHTTP(b []byte, h *authv3.AttributeContext_HttpRequest) bool {
	return scan(b, func(num protowire.Number, x uint64) bool {
		h.Size = int64(x)
		return num == 9
	}, func(num protowire.Number, v []byte) bool {
		var s *string
		switch num {
		case 1:
			s = &h.Id
		case 2, 6, 10:
			w, ok := commonValue(v)
			switch num {
			case 2:
				h.Method = w
			case 6:
				h.Scheme = w
			default:
				h.Protocol = w
			}
			return ok
		case 3:
			if h.Headers == nil {
				// Sized for its entries: a map of at most 8 is one small block, where a
				// larger hint costs a table of groups (several allocations, four times the
				// bytes for Envoy's usual handful of headers).
				h.Headers = make(map[string]string, countFields(b, 3))
			}
			return mapEntry(v, h.Headers)
		case 4:
			s = &h.Path
		case 5:
			s = &h.Host
		case 7:
			s = &h.Query
		case 8:
			s = &h.Fragment
		case 11:
			s = &h.Body
		case 12:
			h.RawBody = append([]byte(nil), v...) // nil when empty, as proto.Unmarshal
			return true
		default:
			return false
		}
		ok := false
		*s, ok = str(v)
		return ok
	})
}

// mapEntry decodes one map<string, string> entry into m: a missing key or value is empty,
// a repeated one the last; a later entry replaces an earlier one of the same key.
func mapEntry(b []byte, m map[string]string) bool {
	var k, v string
	ok := fields(b, func(num protowire.Number, x []byte) bool {
		ok := false
		switch num {
		case 1:
			k, ok = headerName(x)
		case 2:
			v, ok = str(x)
		}
		return ok
	})
	if ok {
		m[k] = v
	}
	return ok
}

// headerName is str, without a copy for the header names Envoy sends on most requests.
func headerName(b []byte) (string, bool) {
	switch string(b) { // no allocation: the compiler compares in place
	case ":authority":
		return ":authority", true
	case ":method":
		return ":method", true
	case ":path":
		return ":path", true
	case ":scheme":
		return ":scheme", true
	case "accept":
		return "accept", true
	case "accept-encoding":
		return "accept-encoding", true
	case "authorization":
		return "authorization", true
	case "content-length":
		return "content-length", true
	case "content-type":
		return "content-type", true
	case "traceparent":
		return "traceparent", true
	case "user-agent":
		return "user-agent", true
	case "x-api-key":
		return "x-api-key", true
	case "x-envoy-expected-rq-timeout-ms":
		return "x-envoy-expected-rq-timeout-ms", true
	case "x-forwarded-for":
		return "x-forwarded-for", true
	case "x-forwarded-proto":
		return "x-forwarded-proto", true
	case "x-request-id":
		return "x-request-id", true
	}
	return str(b)
}

// commonValue is str, without a copy for the usual methods, schemes and protocols.
func commonValue(b []byte) (string, bool) {
	switch string(b) {
	case "GET":
		return "GET", true
	case "POST":
		return "POST", true
	case "PUT":
		return "PUT", true
	case "DELETE":
		return "DELETE", true
	case "http":
		return "http", true
	case "https":
		return "https", true
	case "HTTP/1.1":
		return "HTTP/1.1", true
	case "HTTP/2":
		return "HTTP/2", true
	}
	return str(b)
}
