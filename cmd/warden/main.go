// Command warden is the Warden server: it reads one YAML config file, builds the stores
// (Redis when configured, the embedded in-memory store otherwise) and serves Warden's gRPC
// API, gRPC health and reflection, and an admin HTTP listener with /healthz, /readyz and
// /metrics.
//
//	go run ./cmd/warden                      # no config: loopback, in-memory store
//	go run ./cmd/warden -config warden.yaml  # hot-reloads warden.yaml on change and SIGHUP
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	restoreGC := startGC()
	started := func(a addrs) {
		gogc := restoreGC()
		if paceGC(a.gcHeadroom, gogc, os.Getenv("GOGC")) {
			startGCPacer(gogc, gcPaceInterval, uint64(a.gcHeadroom))
		}
		if !a.pprof {
			// Nothing can read a heap profile without /debug/pprof (server.pprof is read at
			// start only): stop sampling allocations, whose stack records and bucket table
			// grow with every new call path (0.2-0.4 MiB of RSS).
			runtime.MemProfileRate = 0
		}
	}
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, started); err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
		os.Exit(1)
	}
}

// startGCPercent is GOGC while the server starts: decoding the config allocates about ten
// times what it keeps (11 MiB for a file of 1,000 API keys, 1.5 MiB kept), and with the
// default GOGC of 100 the heap grew to twice that before each collection, so that the
// process's peak RSS (VmHWM) was set at start, 7-8 MiB above its idle RSS, before any call.
// Collecting more often costs the start a few milliseconds of CPU and no call anything.
const startGCPercent = 10

// startGC sets GOGC to startGCPercent and returns the function that puts back the GOGC the
// process started with (the environment's, or 100), to be called once the server is started;
// it returns that GOGC.
func startGC() (restore func() int) {
	old := debug.SetGCPercent(startGCPercent)
	return func() int { debug.SetGCPercent(old); return old }
}
