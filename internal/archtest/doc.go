// Package archtest holds no code: its test enforces the import rules the README's architecture
// promises, over the output of `go list -deps`, so that a change that breaks them fails CI.
//
// The rules:
//   - limiter, authn and authz (and every package below them) know nothing of gRPC, protobuf,
//     generated code or Envoy: they neither import those packages nor reach gRPC, gen or Envoy
//     through any dependency (protobuf reached through CEL, a library authz uses, is allowed);
//   - service never reaches a concrete store (a Redis or memory store, go-redis itself);
//   - clients never reach service;
//   - nothing imports cmd.
package archtest
