package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// envoyproxy/ratelimit, measured beside Warden's RLS on Redis (-peer-ratelimit PATH).
//
// It is started like Warden's Redis rows: pinned to the server CPU with a throwaway
// redis-server of its own, configured through its environment (src/settings/settings.go)
// with a runtime directory that holds a config equivalent to Warden's: the same domain and
// descriptor, and limits high enough that every decision is OK. Statsd is off, every
// listener on loopback. Its Redis work per decision (src/redis/fixed_cache_impl.go) is a
// pipeline of INCRBY + EXPIRE per descriptor: the row is valid only if Redis ran at least
// one increment per call answered OK.

// peerIncrements are the commands that count one of the peer's decisions.
var peerIncrements = []string{"incrby", "incrbyfloat"}

// peerConfig is the peer's domain config: Warden's "bench" RLS domain (a per-user limit of
// 100,000 a second) and the "benchmem" domain of the Memory section (10 an hour, as
// Warden's: the keys stay while they are counted).
const peerConfig = `domain: bench
descriptors:
  - key: user
    rate_limit:
      unit: second
      requests_per_unit: 100000
`

const peerMemConfig = `domain: benchmem
descriptors:
  - key: user
    rate_limit:
      unit: hour
      requests_per_unit: 10
`

// peerEnv is the peer's environment: runtime config under root/ratelimit/config, Redis
// over TCP at redisAddr, statsd off, the gRPC, HTTP and debug listeners on the given
// loopback ports.
func peerEnv(root, redisAddr string, grpcPort, httpPort, debugPort int) []string {
	return []string{
		"RUNTIME_ROOT=" + root,
		"RUNTIME_SUBDIRECTORY=ratelimit",
		"RUNTIME_APPDIRECTORY=config",
		"RUNTIME_WATCH_ROOT=false",
		"RUNTIME_IGNOREDOTFILES=true",
		"CONFIG_TYPE=FILE",
		"BACKEND_TYPE=redis",
		"REDIS_SOCKET_TYPE=tcp",
		"REDIS_TYPE=SINGLE",
		"REDIS_URL=" + redisAddr,
		"USE_STATSD=false",
		"USE_PROMETHEUS=false",
		"TRACING_ENABLED=false",
		"LOG_LEVEL=warn",
		"HOST=127.0.0.1",
		"PORT=" + strconv.Itoa(httpPort),
		"GRPC_HOST=127.0.0.1",
		"GRPC_PORT=" + strconv.Itoa(grpcPort),
		"DEBUG_HOST=127.0.0.1",
		"DEBUG_PORT=" + strconv.Itoa(debugPort),
	}
}

// startPeer starts the peer and its Redis, and waits until it decides a request.
func (s *setup) startPeer(bin, dir, cpu string) error {
	if bin == "" {
		return fmt.Errorf("%s: no -peer-ratelimit binary", s.label)
	}
	root, err := os.MkdirTemp(dir, "peer-")
	if err != nil {
		return err
	}
	conf := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		return err
	}
	for name, text := range map[string]string{"bench.yaml": peerConfig, "benchmem.yaml": peerMemConfig} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	p, addr, err := startRedis(cpu)
	if err != nil {
		return err
	}
	s.redisProc, s.redisAddr = p, addr
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	env := peerEnv(root, addr, ports[0], ports[1], ports[2])
	if s.warden, err = startProcEnv("envoyproxy/ratelimit", pinned(cpu, bin), env, nil); err != nil {
		return err
	}
	s.grpcAddr = "127.0.0.1:" + strconv.Itoa(ports[0])
	return s.waitDeciding()
}

// waitDeciding waits until the server answers an RLS request OK (its config loaded).
func (s *setup) waitDeciding() error {
	cc, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, last = rlsDecide(ctx, cc, rlsRequest(0))
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-s.warden.done:
			return s.warden.failure("exited at start")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return s.warden.failure(fmt.Sprintf("did not answer an RLS request OK within 30s (%v)", last))
}
