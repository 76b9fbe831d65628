package envoy_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	commonrl "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/clients/envoy/envoytest"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// echoSubject allows every request as the user its x-user header names, with a header to
// remove and a rate-limit header of that user's: an answer that differs from user to user.
func echoSubject(req *wardenv1.CheckRequest) (*wardenv1.CheckResponse, error) {
	u := req.GetHttp().GetHeaders()["x-user"]
	return &wardenv1.CheckResponse{Allowed: true, HttpStatus: 200,
		UpstreamHeaders:         []*wardenv1.Header{{Name: "x-warden-subject", Value: u}},
		UpstreamHeadersToRemove: []string{"x-drop-" + u},
		ResponseHeaders:         []*wardenv1.Header{{Name: "ratelimit", Value: `"` + u + `";r=1;t=1`}},
	}, nil
}

func userRequest(u string) *authv3.CheckRequest {
	return envoytest.Request{Method: "GET", Path: "/v1/" + u, Host: "api", Headers: [][2]string{{"x-user", u}}}.CheckRequest()
}

// checkEcho checks that resp is echoSubject's answer for user u.
func checkEcho(t *testing.T, resp *authv3.CheckResponse, u string) {
	t.Helper()
	ok := resp.GetOkResponse()
	if ok == nil || len(ok.GetHeaders()) != 1 || ok.GetHeaders()[0].GetHeader().GetValue() != u ||
		len(ok.GetHeadersToRemove()) != 1 || ok.GetHeadersToRemove()[0] != "x-drop-"+u ||
		len(ok.GetResponseHeadersToAdd()) != 1 || ok.GetResponseHeadersToAdd()[0].GetHeader().GetValue() != `"`+u+`";r=1;t=1` {
		t.Fatalf("got %v, want %s's answer", resp, u)
	}
}

// viaCodec marshals m with Codec, as the gRPC server does once the handler has returned, and
// decodes the bytes into out.
func viaCodec[M proto.Message](t *testing.T, m, out M) M {
	t.Helper()
	data, err := envoy.Codec{}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Free()
	if err := proto.Unmarshal(data.Materialize(), out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReusedAnswerNotReusedBeforeMarshal: with ReuseAnswers, an answer that Codec has not
// marshalled is never the memory of a later answer (notReusedBeforeMarshal).
func TestReusedAnswerNotReusedBeforeMarshal(t *testing.T) {
	s := envoy.NewAuthServer(&fakeChecker{decide: echoSubject}, envoy.AuthConfig{ReuseAnswers: true})
	notReusedBeforeMarshal(t, func(i int) (*authv3.CheckResponse, error) {
		return s.Check(context.Background(), userRequest(fmt.Sprint("user-", i)))
	}, func(t *testing.T, resp *authv3.CheckResponse, i int) { checkEcho(t, resp, fmt.Sprint("user-", i)) })
}

// notReusedBeforeMarshal checks that the answer of call(-1), not marshalled, is unchanged by
// 50 later calls (call(i)), whose answers are marshalled by Codec (and reused); check checks
// that an answer, and its bytes, are the i-th call's.
func notReusedBeforeMarshal[M proto.Message](t *testing.T, call func(i int) (M, error), check func(t *testing.T, resp M, i int)) {
	t.Helper()
	first, err := call(-1)
	if err != nil {
		t.Fatal(err)
	}
	check(t, first, -1)
	want := proto.Clone(first)
	for i := range 50 {
		resp, err := call(i)
		if err != nil {
			t.Fatal(err)
		}
		check(t, resp, i)
		check(t, viaCodec(t, resp, resp.ProtoReflect().New().Interface().(M)), i)
	}
	if !proto.Equal(first, want) {
		t.Errorf("an answer not yet marshalled changed:\ngot  %v\nwant %v", first, want)
	}
}

// concurrently runs call(g, i) for i from 0 to 99 in each of 8 goroutines g.
func concurrently(call func(g, i int)) {
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				call(g, i)
			}
		})
	}
	wg.Wait()
}

// TestReusedAnswersOverGRPC: many concurrent clients of a real gRPC server with Codec and
// ReuseAnswers each get their own answer, never another call's (run it with -race: a call
// reused while the server still read its answer is a data race).
func TestReusedAnswersOverGRPC(t *testing.T) {
	s := envoy.NewAuthServer(&fakeChecker{decide: echoSubject}, envoy.AuthConfig{ReuseAnswers: true})
	cc := serveGRPCWith(t, []grpc.ServerOption{grpc.ForceServerCodecV2(envoy.Codec{})}, func(gs *grpc.Server) {
		authv3.RegisterAuthorizationServer(gs, s)
	})
	c := authv3.NewAuthorizationClient(cc)
	concurrently(func(g, i int) {
		u := fmt.Sprintf("user-%d-%d", g, i)
		resp, err := c.Check(context.Background(), userRequest(u))
		if err != nil {
			t.Error(err)
			return
		}
		checkEcho(t, resp, u)
	})
}

// TestAnswerBytesNotReusedBeforeFree: the bytes Codec writes an answer into (a pooled
// buffer) are never those of a later answer before gRPC has freed them: they are unchanged
// by later answers, marshalled and freed.
func TestAnswerBytesNotReusedBeforeFree(t *testing.T) {
	s := envoy.NewAuthServer(&fakeChecker{decide: echoSubject}, envoy.AuthConfig{ReuseAnswers: true})
	ctx := context.Background()
	first, err := s.Check(ctx, userRequest("alice"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := envoy.Codec{}.Marshal(first)
	if err != nil {
		t.Fatal(err)
	}
	want := data.Materialize() // a copy
	for i := range 50 {
		u := fmt.Sprint("user-", i)
		resp, err := s.Check(ctx, userRequest(u))
		if err != nil {
			t.Fatal(err)
		}
		checkEcho(t, viaCodec(t, resp, new(authv3.CheckResponse)), u)
	}
	if got := data.Materialize(); !bytes.Equal(got, want) {
		t.Errorf("the bytes of an answer not yet sent changed:\ngot  %q\nwant %q", got, want)
	}
	data.Free()
}

// TestReusedAnswerAllocs: with ReuseAnswers, an allowed Check whose answer Codec marshals
// allocates nothing but the buffer slice of its bytes (which are in a pooled buffer, 3
// allocations before; the call's block, 2688 B, is reused: 2 allocations without
// ReuseAnswers).
func TestReusedAnswerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for _, tc := range []struct {
		reuse bool
		want  float64
	}{{false, 2}, {true, 1}} {
		s := envoy.NewAuthServer(constChecker{benchAllowed()}, envoy.AuthConfig{ReuseAnswers: tc.reuse})
		req := benchRequest().CheckRequest()
		ctx := context.Background()
		got := testing.AllocsPerRun(200, func() {
			resp, err := s.Check(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			data, err := envoy.Codec{}.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			data.Free()
		})
		if got != tc.want {
			t.Errorf("ReuseAnswers %v: got %v allocations per call, want %v", tc.reuse, got, tc.want)
		}
	}
}

// rlsUserRequest asks for user u's descriptor of domain "bench" with a limit override of n
// per second: the answer (limit, remaining, headers) differs from call to call.
func rlsUserRequest(u string, n uint32) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*commonrl.RateLimitDescriptor{{
		Entries: []*commonrl.RateLimitDescriptor_Entry{{Key: "user", Value: u}},
		Limit:   &commonrl.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: n, Unit: typev3.RateLimitUnit_SECOND},
	}}}
}

// checkRLS checks that resp answers the first hit of a limit of n per second.
func checkRLS(t *testing.T, resp *rlsv3.RateLimitResponse, n uint32) {
	t.Helper()
	want := fmt.Sprintf("q=%d;", n)
	if st := resp.GetStatuses(); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || len(st) != 1 ||
		st[0].GetCurrentLimit().GetRequestsPerUnit() != n || st[0].GetLimitRemaining() != n-1 ||
		len(resp.GetResponseHeadersToAdd()) == 0 || !strings.Contains(resp.GetResponseHeadersToAdd()[0].GetValue(), want) {
		t.Fatalf("got %v, want the first hit of a limit of %d", resp, n)
	}
}

// TestReusedRateLimitAnswerNotReusedBeforeMarshal: with ReuseAnswers, an RLS answer that
// Codec has not marshalled is never the memory of a later answer (notReusedBeforeMarshal).
func TestReusedRateLimitAnswerNotReusedBeforeMarshal(t *testing.T) {
	s, _ := rlsBench(t, envoy.RateLimitConfig{ReuseAnswers: true, ResponseHeaders: true})
	notReusedBeforeMarshal(t, func(i int) (*rlsv3.RateLimitResponse, error) {
		return s.ShouldRateLimit(context.Background(), rlsUserRequest(fmt.Sprint("user-", i), uint32(100+i)))
	}, func(t *testing.T, resp *rlsv3.RateLimitResponse, i int) { checkRLS(t, resp, uint32(100+i)) })
}

// TestReusedRateLimitAnswersOverGRPC: many concurrent clients of a real gRPC server with
// Codec and ReuseAnswers, in front of Warden (whose answers the adapter reuses too), each get
// their own answer, never another call's (run it with -race: a call reused while the server
// still read its answer is a data race).
func TestReusedRateLimitAnswersOverGRPC(t *testing.T) {
	s, _ := rlsBench(t, envoy.RateLimitConfig{ReuseAnswers: true, ResponseHeaders: true})
	cc := serveGRPCWith(t, []grpc.ServerOption{grpc.ForceServerCodecV2(envoy.Codec{})}, func(gs *grpc.Server) {
		rlsv3.RegisterRateLimitServiceServer(gs, s)
	})
	c := rlsv3.NewRateLimitServiceClient(cc)
	concurrently(func(g, i int) {
		n := uint32(1000*(g+1) + i)
		resp, err := c.ShouldRateLimit(context.Background(), rlsUserRequest(fmt.Sprint("user-", n), n))
		if err != nil {
			t.Error(err)
			return
		}
		checkRLS(t, resp, n)
	})
}
