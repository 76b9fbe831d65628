package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"sync"
	"sync/atomic"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// maxRequestIDLen bounds a request id taken from a caller: longer ones are cut.
const maxRequestIDLen = 128

// reqInfo is the context of one unary call as its handler sees it: the call's request, and
// its request id, found (or generated) only when a line is logged, then the same for every
// line of the call. It is unaryStack's one allocation per call.
type reqInfo struct {
	context.Context
	req  any
	once sync.Once
	id   string
}

type reqInfoKey struct{}

func (r *reqInfo) Value(k any) any {
	if k == (reqInfoKey{}) {
		return r
	}
	return r.Context.Value(k)
}

func (r *reqInfo) requestID() string {
	r.once.Do(func() { r.id = findRequestID(r.Context, r.req) })
	return r.id
}

// unaryStack is the server's one unary interceptor: the RED metrics (rpcMetrics), the
// call's context for request ids (reqInfo), then panic recovery, composed by hand:
// grpc.ChainUnaryInterceptor allocates a closure per call for every interceptor but the
// last (two for these three). So the stack costs a call one allocation, its reqInfo, where
// the metrics and recovery chained by grpc alone cost one too: request ids add none.
type unaryStack struct {
	rpc     *rpcMetrics
	recover grpc.UnaryServerInterceptor
}

func (u unaryStack) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	mm, start := u.rpc.begin(info.FullMethod)
	resp, err := u.recover(&reqInfo{Context: ctx, req: req}, req, info, handler)
	u.rpc.end(mm, start, resp, err)
	return resp, err
}

// findRequestID is the call's request id: Envoy's (attributes.request.http.id of an ext_authz
// check, or its x-request-id header), else the x-request-id of a Warden API check's HTTP
// request or of the call's gRPC metadata, else a new one.
func findRequestID(ctx context.Context, req any) string {
	var id string
	switch r := req.(type) {
	case *authv3.CheckRequest:
		h := r.GetAttributes().GetRequest().GetHttp()
		if id = h.GetId(); id == "" {
			id = h.GetHeaders()["x-request-id"]
		}
	case *wardenv1.CheckRequest:
		id = r.GetHttp().GetHeaders()["x-request-id"]
	}
	if id == "" {
		if v := metadata.ValueFromIncomingContext(ctx, "x-request-id"); len(v) > 0 {
			id = v[0]
		}
	}
	if id == "" {
		return newRequestID()
	}
	if len(id) > maxRequestIDLen {
		id = id[:maxRequestIDLen]
	}
	return id
}

var (
	requestIDBase [8]byte // random per process, so that replicas do not collide
	requestIDSeq  atomic.Uint64
)

func init() { _, _ = rand.Read(requestIDBase[:]) }

// newRequestID is 32 hex digits: the process's random base and a sequence number.
func newRequestID() string {
	var b [16]byte
	copy(b[:8], requestIDBase[:])
	binary.BigEndian.PutUint64(b[8:], requestIDSeq.Add(1))
	return hex.EncodeToString(b[:])
}

// ctxHandler adds to every record logged with a call's context its request_id and, when the
// call's span is sampled, its trace_id. Records logged without one are left as they are.
type ctxHandler struct{ slog.Handler }

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if ri, ok := ctx.Value(reqInfoKey{}).(*reqInfo); ok {
		r.AddAttrs(slog.String("request_id", ri.requestID()))
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return ctxHandler{h.Handler.WithAttrs(as)}
}

func (h ctxHandler) WithGroup(name string) slog.Handler {
	return ctxHandler{h.Handler.WithGroup(name)}
}
