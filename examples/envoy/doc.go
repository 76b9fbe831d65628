// Package envoyexample holds an Envoy configuration (envoy.yaml) that wires both of Warden's
// Envoy services, the matching Warden config (warden.yaml) and envoyproxy/ratelimit files
// (ratelimit/). Its test decodes envoy.yaml with Envoy's own protos.
package envoyexample
