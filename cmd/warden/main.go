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
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.LookupEnv, os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
		os.Exit(1)
	}
}
