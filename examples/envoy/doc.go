// Package envoyexample holds an Envoy configuration (envoy.yaml) that wires both of Warden's
// Envoy services, the matching Warden config (warden.yaml) and envoyproxy/ratelimit files
// (ratelimit/). Its test decodes envoy.yaml with Envoy's own protos; cmd/warden's
// TestEnvoyExample starts Warden from warden.yaml as shipped and sends Envoy-shaped requests
// through it.
package envoyexample
