package main

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// A Scenario is one row of the table: one unary RPC, sent closed loop and open loop against a
// Warden process started with Config, and compared with the floor row named Floor measured
// on the same process in the same round.
//
// Add a scenario by appending one entry to scenarios. An entry that only answers
// UNIMPLEMENTED today does not belong here yet: every error makes the run fail.
type Scenario struct {
	// Name labels the row; it must be unique.
	Name string
	// Floor names the floor row this row is compared with. "" marks a floor: an empty
	// unary handler of the same protocol (health Check for warden.v1, an empty RLS or
	// ext_authz handler for the Envoy adapters). The floor is measured on every Warden
	// process that serves a row naming it, so a ratio never crosses processes.
	Floor string
	// Method is the gRPC full method, "package.Service/Method".
	Method string
	// Proto is a .proto file relative to the repository root, with proto/ as the import
	// path. "" (preferred) asks the server's reflection for descriptors.
	Proto string
	// Request returns the i-th request, for i in [0, requests). The requests are written
	// once to a JSON data file that ghz sends round robin (not ghz template functions,
	// which cost ghz a quarter of its rate). Make them distinct: keys, credentials.
	Request func(i int) proto.Message
	// Config is Warden's YAML config, a text/template over configData (e.g.
	// {{.RedisAddr}}). "" is defaultConfig. The listener addresses are set by flags.
	// Rows with the same Config and Redis share one Warden process.
	Config string
	// Redis starts a throwaway redis-server pinned beside Warden; its CPU counts.
	Redis bool
	// Files are written, by name, into a directory of their own next to the generated
	// config before Warden starts; the Config template sees it as {{.Dir}} (for secrets as
	// file:{{.Dir}}/pepper, a JWKS file, …).
	Files map[string]string
	// Server is "" for Warden, or "floor" for bench/floor: a server with Warden's gRPC setup
	// whose ext_authz Check always allows and whose RLS answers OK, the floor of the Envoy
	// rows. A floor with a Server of its own is measured once, on that server, and every row
	// naming it is compared with that row of the same round. "floor-evalsha" and
	// "floor-batch" are bench/floor deciding RLS (and ext_authz) calls on its Redis (one
	// EVALSHA per descriptor, or concurrent calls batched into one pipeline); "ratelimit" is
	// envoyproxy/ratelimit (-peer-ratelimit), without which the row is left out.
	Server string
	// Beside names a row this one is measured beside: it runs whenever that row is
	// selected by -scenarios (or when its own name is). For the Redis floors and the peer,
	// which make sense only next to Warden's Redis rows.
	Beside string
	// Counted, for a Redis row not served by Warden (no decision counters to read), names
	// the Redis commands (INFO commandstats, lower case) that count a decision: the row is
	// INVALID unless Redis ran at least one of them per call answered OK.
	Counted []string
	// Decide, if set, makes one call with a real client and names the decision it got
	// ("OK", "OVER_LIMIT", "DENY:reason"): ghz sees only gRPC codes, and a denial travels
	// in an OK response. The runner samples requests before and after every measured
	// load, outside the CPU window, and prints the counts. An error fails the run.
	Decide func(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error)
	// Leased marks a Warden Redis row whose limit is leased (rate_limit.lease, in the
	// leaseDomain): its check admits the lease source and compares Redis's debited units with
	// the admitted decisions (checkLeasedLoad).
	Leased bool
}

// configData is what a Scenario's Config template sees.
type configData struct {
	// RedisAddr is the throwaway redis-server's host:port ("" without Redis).
	RedisAddr string
	// Dir holds the scenario's Files.
	Dir string
}

// defaultConfig is Warden's config for rows that need no capability section: the
// in-memory store, and a short drain so that stopping takes no time.
const defaultConfig = `server:
  drain: 10ms
  shutdown_timeout: 2s
`

// healthNames are the services Warden reports SERVING; an unknown name answers NOT_FOUND.
var healthNames = []string{"", "warden.v1.WardenService", "warden.v1.AdminService"}

func healthRequest(i int) proto.Message {
	return &healthpb.HealthCheckRequest{Service: healthNames[i%len(healthNames)]}
}

func healthDecide(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error) {
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, req.(*healthpb.HealthCheckRequest))
	if err != nil {
		return "", err
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return "", fmt.Errorf("health %q: got %v, want SERVING", req.(*healthpb.HealthCheckRequest).Service, resp.Status)
	}
	return resp.Status.String(), nil
}

var (
	memConfig   = sync.OnceValue(func() string { return wardenConfig(false) })
	redisConfig = sync.OnceValue(func() string { return wardenConfig(true) })
)

// scenarios is the registry, in table order. Floors first.
var scenarios = []Scenario{
	{
		Name:    "floor: health Check",
		Method:  "grpc.health.v1.Health/Check",
		Request: healthRequest,
		Decide:  healthDecide,
	},
	{
		// The same call again, compared with the floor: its ratios show the noise between
		// two identical rows of one round.
		Name:    "floor (repeat)",
		Floor:   "floor: health Check",
		Method:  "grpc.health.v1.Health/Check",
		Request: healthRequest,
		Decide:  healthDecide,
	},
	{
		Name:    "floor: ext_authz allow",
		Method:  "envoy.service.auth.v3.Authorization/Check",
		Request: extAuthzRequest,
		Server:  serverFloor,
		Decide:  extAuthzDecide,
	},
	{
		Name:    "floor: RLS OK",
		Method:  "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
		Request: rlsRequest,
		Server:  serverFloor,
		Decide:  rlsDecide,
	},
	wardenRow(Scenario{Name: "CheckRateLimit, memory", Method: wardenMethod + "CheckRateLimit", Request: checkRateLimitRequest, Decide: checkRateLimitDecide}),
	wardenRow(Scenario{Name: "Authenticate, API key", Method: wardenMethod + "Authenticate", Request: apiKeyAuthnRequest, Decide: authnDecide}),
	wardenRow(Scenario{Name: "Authenticate, cached JWT", Method: wardenMethod + "Authenticate", Request: jwtAuthnRequest, Decide: authnDecide}),
	wardenRow(Scenario{Name: "Check, API key + route + memory limit", Method: wardenMethod + "Check", Request: checkRequest, Decide: checkDecide}),
	wardenRow(Scenario{Name: "VerifyWebhook, GitHub", Method: wardenMethod + "VerifyWebhook", Request: webhookRequest, Decide: webhookDecide}),
	envoyRow(Scenario{Name: "ext_authz, API key + route + memory limit", Method: "envoy.service.auth.v3.Authorization/Check", Request: extAuthzRequest, Decide: extAuthzDecide}),
	envoyRow(Scenario{Name: "RLS, memory", Method: "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", Request: rlsRequest, Decide: rlsDecide}),
	redisRow(wardenRow(Scenario{Name: "CheckRateLimit, Redis", Method: wardenMethod + "CheckRateLimit", Request: checkRateLimitRequest, Decide: checkRateLimitDecide})),
	redisRow(envoyRow(Scenario{Name: "ext_authz, API key + route + Redis limit", Method: "envoy.service.auth.v3.Authorization/Check", Request: extAuthzRequest, Decide: extAuthzDecide})),
	// Quota leasing: the same ext_authz call on a route whose limit is leased (50 units a
	// slice, 10s; the leaseDomain of the RLS row below), on the same Warden process;
	// measured beside the unleased row.
	leasedRow("ext_authz, API key + route + Redis limit", redisRow(envoyRow(Scenario{Name: "ext_authz, API key + route + Redis limit, leased", Method: "envoy.service.auth.v3.Authorization/Check", Request: extAuthzLeasedRequest, Decide: extAuthzDecide}))),
	redisRow(envoyRow(Scenario{Name: "RLS, Redis", Method: "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", Request: rlsRequest, Decide: rlsDecide})),
	// Quota leasing: the same RLS call on a leased limit (50 units a slice, 10s), on the
	// same Warden process as "RLS, Redis"; measured beside it.
	leasedRow("RLS, Redis", redisRow(envoyRow(Scenario{Name: "RLS, Redis, leased", Method: "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", Request: rlsLeasedRequest, Decide: rlsDecide}))),
	// The references of the Redis path (issue 19): bench/floor deciding each descriptor with
	// one GCRA script (GET + SET PX on a string), and envoyproxy/ratelimit on its own Redis.
	rlsReference(Scenario{Name: rowEvalsha, Server: serverFloorEvalsha, Counted: []string{"evalsha", "eval"}}),
	rlsReference(Scenario{Name: "floor: RLS batched pipeline, Redis", Server: serverFloorBatch, Counted: []string{"evalsha", "eval"}}),
	rlsReference(Scenario{Name: "envoyproxy/ratelimit, Redis", Server: serverPeer, Counted: peerIncrements}),
	// The floor of the ext_authz row on Redis: bench/floor's ext_authz handler counting each
	// call with one GCRA script in its batched pipeline (the process of the RLS batched
	// floor), compared with the empty ext_authz handler.
	{
		Name:    rowExtAuthzBatch,
		Floor:   "floor: ext_authz allow",
		Beside:  "ext_authz, API key + route + Redis limit",
		Method:  "envoy.service.auth.v3.Authorization/Check",
		Request: extAuthzRequest,
		Decide:  extAuthzDecide,
		Server:  serverFloorBatch,
		Redis:   true,
		Counted: []string{"evalsha", "eval"},
	},
}

// rowExtAuthzBatch is the floor of an ext_authz decision that counts a Redis limit.
const rowExtAuthzBatch = "floor: ext_authz batched pipeline, Redis"

// rowEvalsha is the row Warden's Redis rows compare their open-loop p99 with (issue 19:
// p99 ≤ 1.2× a one-EVALSHA handler's at 500 and 2000 calls/s).
const rowEvalsha = "floor: RLS one EVALSHA per call, Redis"

// rlsReference is an RLS row on Redis served by another server than Warden, measured beside
// Warden's "RLS, Redis" row and compared with the empty RLS floor.
func rlsReference(s Scenario) Scenario {
	s.Floor = "floor: RLS OK"
	s.Beside = "RLS, Redis"
	s.Method = "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
	s.Request = rlsRequest
	s.Decide = rlsDecide
	s.Redis = true
	return s
}
