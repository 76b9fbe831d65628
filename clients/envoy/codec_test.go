package envoy

import (
	"runtime"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func codecSockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

// envoyRequest is what Envoy's ext_authz filter sends for a GET with an API key, as the
// bench sends it, plus the fields Envoy fills that the bench leaves out (time, principal,
// certificate, context extensions).
func envoyRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: codecSockAddr("10.0.0.7", 50017),
			Principal: "spiffe://acme/ns/web/sa/front", Certificate: "-----BEGIN%20CERTIFICATE-----", Service: "front"},
		Destination: &authv3.AttributeContext_Peer{Address: codecSockAddr("10.0.0.2", 8080)},
		Request: &authv3.AttributeContext_Request{Time: &timestamppb.Timestamp{Seconds: 1764670000, Nanos: 123},
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "req-17", Method: "GET", Path: "/v1/users/user-17/orders?page=1", Host: "api.bench",
				Scheme: "http", Protocol: "HTTP/1.1", Size: -1, Query: "page=1", Fragment: "f",
				Headers: map[string]string{
					":authority": "api.bench", ":method": "GET", ":path": "/v1/users/user-17/orders?page=1",
					"authorization": "Bearer sk-live-abc", "user-agent": "bench", "x-request-id": "req-17",
					"x-forwarded-proto": "http", "x-custom": "é", "": "",
				},
				Body: `{"a":1}`,
			}},
		ContextExtensions: map[string]string{"warden_failure_mode": "open"},
	}}
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// codecCases are encoded requests: the fast path takes those with fast set; for every one,
// DecodeCheckRequest must give what proto.Unmarshal gives.
func codecCases(t testing.TB) []struct {
	name string
	b    []byte
	fast bool
} {
	full := marshal(t, envoyRequest())
	withRaw := envoyRequest()
	withRaw.Attributes.Request.Http.Body, withRaw.Attributes.Request.Http.RawBody = "", []byte{0, 1, 2}
	withMeta := envoyRequest()
	withMeta.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"x": {}}}
	withHeaderMap := envoyRequest()
	withHeaderMap.Attributes.Request.Http.Headers = nil
	withHeaderMap.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "a", Value: "b"}}}
	named := envoyRequest()
	named.Attributes.Destination.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}

	// A header entry given again, with another value: the later one wins.
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "user-agent")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendString(entry, "again")
	http := protowire.AppendTag(nil, 3, protowire.BytesType)
	http = protowire.AppendBytes(http, entry)
	req := protowire.AppendTag(nil, 2, protowire.BytesType)
	req = protowire.AppendBytes(req, append(marshal(t, envoyRequest().Attributes.Request.Http), http...))
	attrs := protowire.AppendTag(nil, 4, protowire.BytesType)
	attrs = protowire.AppendBytes(attrs, req)
	dupHeader := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), attrs)

	// The attributes given twice: the generic decoder merges them.
	twice := append(marshal(t, envoyRequest()), marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "POST"}}}})...)

	badUTF8 := envoyRequest()
	badUTF8.Attributes.Request.Http.Headers["x-bad"] = "\xff"
	if _, err := (proto.MarshalOptions{}).Marshal(badUTF8); err == nil {
		t.Fatal("marshalling a non-UTF-8 header: want an error")
	}
	bad := marshal(t, envoyRequest())
	// Swap a byte of "bench" (the user-agent's value) for 0xff: still well formed, not UTF-8.
	for i := 0; i+5 <= len(bad); i++ {
		if string(bad[i:i+5]) == "bench" && i > 0 && bad[i-1] == 5 {
			bad = append([]byte{}, bad...)
			bad[i] = 0xff
			break
		}
	}
	return []struct {
		name string
		b    []byte
		fast bool
	}{
		{"envoy request", full, true},
		{"empty", nil, true},
		{"empty attributes", marshal(t, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}), true},
		{"raw body", marshal(t, withRaw), true},
		{"duplicate header entry", dupHeader, true},
		{"metadata", marshal(t, withMeta), false},
		{"header_map", marshal(t, withHeaderMap), false},
		{"named port", marshal(t, named), false},
		{"attributes twice", twice, false},
		{"not UTF-8", bad, false},
		{"truncated", full[:len(full)-3], false},
		{"unknown field", protowire.AppendVarint(protowire.AppendTag(append([]byte{}, full...), 99, protowire.VarintType), 7), false},
	}
}

// TestDecodeCheckRequestAsProto: DecodeCheckRequest gives what proto.Unmarshal gives, error
// or message, and its fast path takes Envoy's usual requests.
func TestDecodeCheckRequestAsProto(t *testing.T) {
	for _, tc := range codecCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			checkAsProto(t, tc.b)
			if got := fastCheckRequest(tc.b, new(authv3.CheckRequest)); got != tc.fast {
				t.Errorf("fast path taken: got %v, want %v", got, tc.fast)
			}
		})
	}
}

func checkAsProto(t *testing.T, b []byte) {
	t.Helper()
	want := new(authv3.CheckRequest)
	wantErr := proto.Unmarshal(b, want)
	got := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: map[string]string{"stale": "x"}}}
	err := DecodeCheckRequest(b, got)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("got error %v, want %v", err, wantErr)
	}
	if err == nil && !proto.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

// TestCodecUnmarshal: the server codec decodes a CheckRequest from several buffers, and
// hands other messages to the standard codec.
func TestCodecUnmarshal(t *testing.T) {
	b := marshal(t, envoyRequest())
	data := mem.BufferSlice{mem.SliceBuffer(b[:10]), mem.SliceBuffer(b[10:])}
	got := new(authv3.CheckRequest)
	if err := (Codec{}).Unmarshal(data, got); err != nil || !proto.Equal(got, envoyRequest()) {
		t.Fatalf("got %v, %v; want %v", got, err, envoyRequest())
	}
	other := new(corev3.SocketAddress)
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshal(t, &corev3.SocketAddress{Address: "a"}))}, other); err != nil || other.Address != "a" {
		t.Fatalf("other message: got %v, %v", other, err)
	}
	out, err := (Codec{}).Marshal(envoyRequest())
	back := new(authv3.CheckRequest)
	if err != nil || proto.Unmarshal(out.Materialize(), back) != nil || !proto.Equal(back, envoyRequest()) {
		t.Fatalf("Marshal: got %v, %v", back, err)
	}
}

// TestDecodeCheckRequestAllocs: Envoy's usual request costs one block of messages, the
// maps and the strings of their values and of the other fields (the usual header names,
// methods, schemes and protocols are not copied): 29 for envoyRequest, where proto.Unmarshal
// allocates 89 times. The headers map is sized for its entries: with the bench's seven
// headers it is a small map, one block (27 allocations and 3048 bytes with a hint of 16).
func TestDecodeCheckRequestAllocs(t *testing.T) {
	seven := envoyRequest()
	h := seven.Attributes.Request.Http.Headers
	delete(h, "")
	delete(h, "x-custom")
	for _, tc := range []struct {
		name  string
		req   *authv3.CheckRequest
		want  float64
		bytes uint64
	}{
		{"envoy request", envoyRequest(), 29, 2800},
		{"seven headers", seven, 25, 2400},
	} {
		b := marshal(t, tc.req)
		decode := func() {
			if err := DecodeCheckRequest(b, new(authv3.CheckRequest)); err != nil {
				t.Fatal(err)
			}
		}
		if got := testing.AllocsPerRun(100, decode); got > tc.want {
			t.Errorf("%s: got %v allocations per request, want at most %v", tc.name, got, tc.want)
		}
		if got := bytesPerRun(100, decode); got > tc.bytes {
			t.Errorf("%s: got %v bytes allocated per request, want at most %v", tc.name, got, tc.bytes)
		}
	}
}

// bytesPerRun is testing.AllocsPerRun for bytes: the average bytes f allocates per call.
func bytesPerRun(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func FuzzDecodeCheckRequest(f *testing.F) {
	for _, tc := range codecCases(f) {
		f.Add(tc.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkAsProto(t, b) })
}

func BenchmarkDecodeCheckRequest(b *testing.B) {
	raw := marshal(b, envoyRequest())
	for _, v := range []struct {
		name   string
		decode func([]byte, *authv3.CheckRequest) error
	}{
		{"proto", func(b []byte, r *authv3.CheckRequest) error { return proto.Unmarshal(b, r) }},
		{"fast", DecodeCheckRequest},
	} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.decode(raw, new(authv3.CheckRequest)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
