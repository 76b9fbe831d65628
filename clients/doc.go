// Package clients is the Go side of Warden for microservices: a thin typed Client over a
// gRPC connection the caller owns, gRPC server interceptors (UnaryServerInterceptor,
// StreamServerInterceptor) and a net/http Middleware that authenticate, authorize and
// rate-limit every request with one Check call, and an optional AuthnCache of allowed
// decisions.
//
// It speaks only warden.v1 (package gen/warden/v1) and grpc: it knows nothing of how Warden
// decides, and never imports Warden's server packages.
//
// A service protects its gRPC methods with Warden's route table (`POST /pkg.Service/Method`
// routes in the authz section) like this:
//
//	conn, err := grpc.NewClient("warden:50051", append(clients.DialOptions(), grpc.WithTransportCredentials(creds))...)
//	if err != nil {
//		return err
//	}
//	defer conn.Close()
//	wc := clients.NewClient(conn, clients.WithTimeout(100*time.Millisecond))
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(clients.UnaryServerInterceptor(wc)),
//		grpc.ChainStreamInterceptor(clients.StreamServerInterceptor(wc)),
//	)
//
// and reads the caller in its handlers with PrincipalFrom(ctx). Denials reach the end client
// as UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND (someone else's object looks like a missing
// one) or RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure details; the messages stay
// generic, and Warden's reason goes to the service's log only.
//
// When Warden cannot be reached, authentication and authorization fail closed and rate
// limiting fails open by default (WithAuthFailurePolicy, WithRateLimitFailurePolicy); every
// call is bounded by WithTimeout, and an outage is logged once per WithOutageLog interval.
package clients
