package main

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

const wardenMethod = "warden.v1.WardenService/"

// wardenRow is a warden.v1 row on the in-memory Warden with every capability configured,
// compared with the health Check floor on that process.
func wardenRow(s Scenario) Scenario {
	s.Floor = "floor: health Check"
	s.Config = memConfig()
	s.Files = benchFiles()
	return s
}

// envoyRow is an Envoy adapter row, compared with bench/floor's handler of its protocol.
func envoyRow(s Scenario) Scenario {
	s = wardenRow(s)
	s.Floor = "floor: RLS OK"
	if s.Method == "envoy.service.auth.v3.Authorization/Check" {
		s.Floor = "floor: ext_authz allow"
	}
	return s
}

// redisRow moves a row to the Warden whose limits live in a throwaway Redis.
func redisRow(s Scenario) Scenario {
	s.Config = redisConfig()
	s.Redis = true
	return s
}

func checkRateLimitRequest(i int) proto.Message {
	return &wardenv1.CheckRateLimitRequest{Domain: "bench", Descriptors: []*wardenv1.RateLimitDescriptor{
		{Entries: []*wardenv1.RateLimitDescriptor_Entry{{Key: "user", Value: user(i)}}},
	}}
}

func checkRateLimitDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := wardenv1.NewWardenServiceClient(cc).CheckRateLimit(ctx, req.(*wardenv1.CheckRateLimitRequest))
	if err != nil {
		return "", err
	}
	if !resp.GetAllowed() || len(resp.GetStatuses()) != 1 {
		return "", fmt.Errorf("got %v, want allowed with one status", resp)
	}
	return "OK", nil
}

func apiKeyAuthnRequest(i int) proto.Message {
	return &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{ApiKey: fixtures().keys[i]}}
}

func jwtAuthnRequest(i int) proto.Message {
	f := fixtures()
	return &wardenv1.AuthenticateRequest{Credentials: &wardenv1.Credentials{BearerToken: f.jwts[i%len(f.jwts)]}}
}

func authnDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := wardenv1.NewWardenServiceClient(cc).Authenticate(ctx, req.(*wardenv1.AuthenticateRequest))
	if err != nil {
		return "", err
	}
	if !resp.GetAuthenticated() || resp.GetPrincipal().GetSubject() == "" {
		return "", fmt.Errorf("got %v, want authenticated", resp)
	}
	return "AUTHENTICATED " + resp.GetPrincipal().GetMethod().String(), nil
}

// ordersPath is user i's own orders: the route's owner check passes for key i.
func ordersPath(i int) string { return "/v1/users/" + user(i) + "/orders" }

func checkRequest(i int) proto.Message {
	return &wardenv1.CheckRequest{Http: &wardenv1.HttpRequest{Method: "GET", Path: ordersPath(i), Host: "api.bench",
		Headers: map[string]string{"authorization": "Bearer " + fixtures().keys[i], "user-agent": "bench"}}}
}

func checkDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := wardenv1.NewWardenServiceClient(cc).Check(ctx, req.(*wardenv1.CheckRequest))
	if err != nil {
		return "", err
	}
	if !resp.GetAllowed() || len(resp.GetRateLimits()) != 1 {
		return "", fmt.Errorf("got %v, want allowed with one rate limit", resp)
	}
	return "ALLOWED", nil
}

func webhookRequest(i int) proto.Message {
	f := fixtures()
	return &wardenv1.VerifyWebhookRequest{Source: "gh", Headers: f.ghHeaders[i], Body: f.ghBodies[i]}
}

func webhookDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := wardenv1.NewWardenServiceClient(cc).VerifyWebhook(ctx, req.(*wardenv1.VerifyWebhookRequest))
	if err != nil {
		return "", err
	}
	if !resp.GetValid() {
		return "", fmt.Errorf("got %v, want valid", resp)
	}
	return "VALID", nil
}

// extAuthzRequest is what Envoy's ext_authz filter sends for user i's request with key i.
func extAuthzRequest(i int) proto.Message { return extAuthzRequestFor(ordersPath(i), i) }

// extAuthzLeasedRequest is extAuthzRequest on the route whose limit is leased (leaseDomain).
func extAuthzLeasedRequest(i int) proto.Message { return extAuthzRequestFor(leasedOrdersPath(i), i) }

// leasedOrdersPath is ordersPath on the route limited in leaseDomain.
func leasedOrdersPath(i int) string { return "/v1/leased/users/" + user(i) + "/orders" }

// extAuthzRequestFor is what Envoy's ext_authz filter sends for user i's request of path
// with key i.
func extAuthzRequestFor(path string, i int) proto.Message {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sockAddr("10.0.0.7", 50000+uint32(i))},
		Destination: &authv3.AttributeContext_Peer{Address: sockAddr("10.0.0.2", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: fmt.Sprint("req-", i), Method: "GET", Path: path + "?page=1", Host: "api.bench",
			Scheme: "http", Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority": "api.bench", ":method": "GET", ":path": path + "?page=1",
				"authorization": "Bearer " + fixtures().keys[i], "user-agent": "bench",
				"x-request-id": fmt.Sprint("req-", i), "x-forwarded-proto": "http",
			},
		}},
	}}
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func extAuthzDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := authv3.NewAuthorizationClient(cc).Check(ctx, req.(*authv3.CheckRequest))
	if err != nil {
		return "", err
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
		return "", fmt.Errorf("got %v, want an OK response", resp)
	}
	return "ALLOWED", nil
}

func rlsRequest(i int) proto.Message {
	return &rlsv3.RateLimitRequest{Domain: "bench", Descriptors: []*rlcommon.RateLimitDescriptor{
		{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "user", Value: user(i)}}},
	}}
}

// leasedRow marks a Redis row as leased and measures it beside the unleased row named beside.
func leasedRow(beside string, s Scenario) Scenario {
	s.Leased = true
	s.Beside = beside
	return s
}

// rlsLeasedRequest is rlsRequest in the leased domain.
func rlsLeasedRequest(i int) proto.Message {
	return &rlsv3.RateLimitRequest{Domain: leaseDomain, Descriptors: []*rlcommon.RateLimitDescriptor{
		{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "user", Value: user(i)}}},
	}}
}

func rlsDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := rlsv3.NewRateLimitServiceClient(cc).ShouldRateLimit(ctx, req.(*rlsv3.RateLimitRequest))
	if err != nil {
		return "", err
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || len(resp.GetStatuses()) != 1 {
		return "", fmt.Errorf("got %v, want OK with one status", resp)
	}
	return "OK", nil
}
