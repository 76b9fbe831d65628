package main

import (
	"testing"

	"github.com/jhump/protoreflect/desc"
	"github.com/jhump/protoreflect/desc/builder"
	"github.com/jhump/protoreflect/dynamic"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// dynamicOf is m as ghz holds it: a dynamic.Message of m's descriptor.
func dynamicOf(t *testing.T, m proto.Message) *dynamic.Message {
	t.Helper()
	md, err := desc.WrapMessage(m.ProtoReflect().Descriptor())
	if err != nil {
		t.Fatal(err)
	}
	dm := dynamic.NewMessage(md)
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := dm.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return dm
}

func TestGeneratedCodecRequest(t *testing.T) {
	c := newGeneratedCodec()
	want := checkRateLimitRequest(7).(*wardenv1.CheckRateLimitRequest)
	dm := dynamicOf(t, want)
	for range 2 { // the second call uses the cached twin
		bs, err := c.Marshal(dm)
		if err != nil {
			t.Fatal(err)
		}
		got := new(wardenv1.CheckRateLimitRequest)
		if err := proto.Unmarshal(bs.Materialize(), got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("on the wire: %v, want %v", got, want)
		}
	}
}

func TestGeneratedCodecResponse(t *testing.T) {
	c := newGeneratedCodec()
	resp := &wardenv1.CheckRateLimitResponse{Allowed: true, Headers: []*wardenv1.Header{{Name: "RateLimit", Value: `"a";r=1;t=1`}}}
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	dm := dynamicOf(t, &wardenv1.CheckRateLimitResponse{})
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, dm); err != nil {
		t.Fatal(err)
	}
	// A response that is not a valid message is still an error, so ghz counts the call failed.
	if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x1a, 0x7f})}, dm); err == nil {
		t.Fatal("a truncated response decoded without error")
	}
}

// A message whose type is not linked into the binary goes through ghz's dynamic path.
func TestGeneratedCodecUnknownType(t *testing.T) {
	mb := builder.NewMessage("Unlinked").AddField(builder.NewField("name", builder.FieldTypeString()))
	md, err := mb.Build()
	if err != nil {
		t.Fatal(err)
	}
	dm := dynamic.NewMessage(md)
	dm.SetFieldByName("name", "x")
	c := newGeneratedCodec()
	bs, err := c.Marshal(dm)
	if err != nil {
		t.Fatal(err)
	}
	back := dynamic.NewMessage(md)
	if err := c.Unmarshal(bs, back); err != nil {
		t.Fatal(err)
	}
	if got := back.GetFieldByName("name"); got != "x" {
		t.Fatalf("round trip through the fallback: name %v, want x", got)
	}
}
