package envoy_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
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

// TestReusedAnswerNotReusedBeforeMarshal: with ReuseAnswers, an answer that Codec has not
// marshalled is never the memory of a later answer: it is unchanged by later calls, whose
// answers are marshalled (and reused).
func TestReusedAnswerNotReusedBeforeMarshal(t *testing.T) {
	s := envoy.NewAuthServer(&fakeChecker{decide: echoSubject}, envoy.AuthConfig{ReuseAnswers: true})
	ctx := context.Background()
	first, err := s.Check(ctx, userRequest("alice"))
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(first)
	for i := range 50 {
		u := fmt.Sprint("user-", i)
		resp, err := s.Check(ctx, userRequest(u))
		if err != nil {
			t.Fatal(err)
		}
		checkEcho(t, resp, u)
		data, err := envoy.Codec{}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got := new(authv3.CheckResponse)
		if err := proto.Unmarshal(data.Materialize(), got); err != nil {
			t.Fatal(err)
		}
		checkEcho(t, got, u)
	}
	if !proto.Equal(first, want) {
		t.Errorf("an answer not yet marshalled changed:\ngot  %v\nwant %v", first, want)
	}
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
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 100 {
				u := fmt.Sprintf("user-%d-%d", g, i)
				resp, err := c.Check(context.Background(), userRequest(u))
				if err != nil {
					t.Error(err)
					return
				}
				checkEcho(t, resp, u)
			}
		})
	}
	wg.Wait()
}

// TestReusedAnswerAllocs: with ReuseAnswers, an allowed Check whose answer Codec marshals
// allocates nothing of its own: the answer's bytes and their buffer slice only (the call's
// block, 2688 B, is reused: 4 allocations without ReuseAnswers).
func TestReusedAnswerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	for _, tc := range []struct {
		reuse bool
		want  float64
	}{{false, 4}, {true, 3}} {
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
