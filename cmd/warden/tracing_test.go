package main

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// otlpReceiver collects the spans of OTLP exports, over gRPC or HTTP.
type otlpReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu       sync.Mutex
	requests []*coltracepb.ExportTraceServiceRequest
	headers  []string // the test header of each export
}

func (r *otlpReceiver) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	r.add(req, md.Get("x-test-token"))
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) add(req *coltracepb.ExportTraceServiceRequest, token []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	r.headers = append(r.headers, token...)
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	b, err := io.ReadAll(hr.Body)
	req := new(coltracepb.ExportTraceServiceRequest)
	if err != nil || hr.URL.Path != "/v1/traces" || proto.Unmarshal(b, req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	r.add(req, hr.Header.Values("x-test-token"))
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// spanIn reports whether an export held a span of traceID from service.name warden, and the
// resource's service.version.
func (r *otlpReceiver) spanIn(traceID string) (found bool, version string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			var name string
			for _, kv := range rs.GetResource().GetAttributes() {
				switch kv.GetKey() {
				case "service.name":
					name = kv.GetValue().GetStringValue()
				case "service.version":
					version = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					if hex.EncodeToString(sp.GetTraceId()) == traceID && name == "warden" {
						return true, version
					}
				}
			}
		}
	}
	return false, ""
}

// TestOTLPExportSampledSpan runs Warden with tracing on and an OTLP endpoint (gRPC, then
// HTTP) on a loopback receiver, sends a call carrying a sampled W3C traceparent in its gRPC
// metadata, and finds the server span of that trace in the receiver once Warden stopped
// (stopping flushes the batch), with service.name warden, its version and the configured
// header.
func TestOTLPExportSampledSpan(t *testing.T) {
	for _, protocol := range []string{"grpc", "http/protobuf"} {
		t.Run(protocol, func(t *testing.T) {
			recv := &otlpReceiver{}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if protocol == "grpc" {
				s := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(s, recv)
				go s.Serve(lis)
				t.Cleanup(s.Stop)
			} else {
				s := &http.Server{Handler: recv}
				go s.Serve(lis)
				t.Cleanup(func() { s.Close() })
			}
			p := filepath.Join(t.TempDir(), "w.yaml")
			cfg := "telemetry:\n  trace_sample_ratio: 0.0001\n  otlp:\n    protocol: " + protocol +
				"\n    endpoint: http://" + lis.Addr().String() +
				"\n    headers: [{name: x-test-token, value: \"${OTLP_TOKEN}\"}]\nserver:\n  drain: 0s\n"
			if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			w := start(t, map[string]string{"OTLP_TOKEN": "s3cret"}, "-config", p)
			c := wardenv1.NewWardenServiceClient(dial(t, w.GRPC))
			const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
			_, _ = c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/"}})
			// An unsampled parent: nothing exported for it (the ratio alone samples 1 in 10^4).
			const unsampled = "5bf92f3577b34da6a3ce929d0e0e4736"
			ctx = metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+unsampled+"-00f067aa0ba902b7-00")
			_, _ = c.Check(ctx, &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: "/"}})
			// ext_authz: the trace context of the HTTP request Envoy asks about.
			const httpTrace = "6bf92f3577b34da6a3ce929d0e0e4736"
			_, _ = authv3.NewAuthorizationClient(dial(t, w.GRPC)).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/",
					Headers: map[string]string{"traceparent": "00-" + httpTrace + "-00f067aa0ba902b7-01"}}}}})
			w.stop(t)
			if f, _ := recv.spanIn(httpTrace); !f {
				t.Error("no span in the trace of the ext_authz request's traceparent header")
			}
			found, version := recv.spanIn(traceID)
			if !found {
				t.Fatalf("no span of trace %s from service warden among %d exports", traceID, len(recv.requests))
			}
			if version == "" {
				t.Error("no service.version in the resource")
			}
			if f, _ := recv.spanIn(unsampled); f {
				t.Error("the unsampled trace was exported")
			}
			recv.mu.Lock()
			defer recv.mu.Unlock()
			if len(recv.headers) == 0 || recv.headers[0] != "s3cret" {
				t.Errorf("export headers: got %v, want the configured x-test-token", recv.headers)
			}
		})
	}
}
