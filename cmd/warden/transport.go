package main

import (
	"runtime"

	"google.golang.org/grpc"
)

// transportOptions are the gRPC server's options for how it runs calls.
//
// Stream workers: by default grpc-go starts a goroutine per call, whose stack starts small
// and is grown (copied) two or three times on the way down Warden's handlers (the Envoy
// adapter, authentication, the limiter): runtime.newstack was 14-20 % of the server's CPU
// on the ext_authz path. Long-lived workers keep their grown stacks. A call arriving while
// every worker is busy (e.g. all waiting for Redis) still gets a goroutine of its own, so the
// count bounds only the reuse, not the concurrency.
func transportOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.NumStreamWorkers(streamWorkers(runtime.GOMAXPROCS(0)))}
}

// streamWorkers is the number of stream workers for procs Ps: enough for the calls a server
// has in flight under a closed-loop load of 50 (the handlers wait for Redis), at a few KiB of
// stack each when idle.
func streamWorkers(procs int) uint32 { return uint32(max(64, 16*procs)) }
