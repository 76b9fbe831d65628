package main

import (
	"context"
	"fmt"

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
	// Decide, if set, makes one call with a real client and names the decision it got
	// ("OK", "OVER_LIMIT", "DENY:reason"): ghz sees only gRPC codes, and a denial travels
	// in an OK response. The runner samples requests before and after every measured
	// load, outside the CPU window, and prints the counts. An error fails the run.
	Decide func(ctx context.Context, cc *grpc.ClientConn, req proto.Message) (string, error)
}

// configData is what a Scenario's Config template sees.
type configData struct {
	// RedisAddr is the throwaway redis-server's host:port ("" without Redis).
	RedisAddr string
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
}
