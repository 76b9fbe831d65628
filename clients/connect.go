package clients

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	_ "google.golang.org/grpc/health" // registers the client side of health checking

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// DefaultReconnectMaxDelay is the longest wait between two attempts to reconnect to Warden
// with DialOptions.
const DefaultReconnectMaxDelay = 500 * time.Millisecond

// DialOptions returns the options this package recommends for the connection to Warden, to
// pass to grpc.NewClient with the transport credentials:
//
//   - reconnection with a short backoff (50 ms growing ×1.6, jitter 20 %, at most
//     DefaultReconnectMaxDelay), so that requests are decided again within about half a
//     second of Warden's return however long it was gone. gRPC's default grows to 120 s: after
//     a 20 s outage a service kept answering 503 for 5 s more.
//   - a health-checked channel (grpc.health.v1 on warden.v1.WardenService): a Warden that
//     reports NOT_SERVING (draining) gets no new calls, which fail at once instead of waiting
//     for their deadline.
//
// Warden's replicas behind one DNS name are balanced round robin.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  50 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   DefaultReconnectMaxDelay,
			},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}],` +
			`"healthCheckConfig":{"serviceName":"` + wardenv1.WardenService_ServiceDesc.ServiceName + `"}}`),
	}
}
