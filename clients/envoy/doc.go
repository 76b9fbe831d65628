// Package envoy adapts Warden to Envoy's two external services, so that Envoy asks Warden
// directly with no sidecar in between:
//
//   - AuthServer implements envoy.service.auth.v3.Authorization (the ext_authz filter): it
//     turns Envoy's CheckRequest into a warden.v1 CheckRequest, asks a Checker, and answers
//     with the identity headers to set upstream or the denial to send to the client.
//   - RateLimitServer implements envoy.service.ratelimit.v3.RateLimitService (the ratelimit
//     filter): a drop-in for envoyproxy/ratelimit that asks a RateLimiter.
//
// Both declare the one-method interface they need. *service.Server satisfies it in the Warden
// process (cmd/warden registers the adapters on its own gRPC server); a generated
// wardenv1.WardenServiceClient satisfies it remotely, so the adapters can also run in a
// separate process that forwards to Warden. This is the only package that imports Envoy's
// protos; it does not import service, and knows nothing of how Warden decides.
//
// Register both on a gRPC server:
//
//	authServer := envoy.NewAuthServer(warden, envoy.AuthConfig{Logger: log})
//	rlsServer := envoy.NewRateLimitServer(warden, envoy.RateLimitConfig{ResponseHeaders: true})
//	authv3.RegisterAuthorizationServer(grpcServer, authServer)
//	rlsv3.RegisterRateLimitServiceServer(grpcServer, rlsServer)
//
// See README.md beside this file for the Envoy side: filters, timeouts and failure modes.
package envoy
