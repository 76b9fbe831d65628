package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/wardenhq/warden/clients/envoy"
	"github.com/wardenhq/warden/fielderr"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/limiter/rlconfig"
	"github.com/wardenhq/warden/service"
)

// envoySection is the envoy section: the adapters' own configs (envoy.AuthConfig,
// envoy.RateLimitConfig) and the server's settings around them:
//
//	envoy:
//	  ratelimit_config: /etc/ratelimit/config   # envoyproxy/ratelimit files: a file or a directory
//	  merge_domain_config: false                 # its MERGE_DOMAIN_CONFIG
//	  rls: {enabled: true, response_headers: false, limit_response_headers_enabled: false, unavailable: decision}   # or error
//	  ext_authz: {enabled: true, failure_mode: closed}   # or open, or error
//	  listen_addr: 127.0.0.1:8081                # optional: also serve both on this port
type envoySection struct {
	// RateLimitConfig is a file or directory of envoyproxy/ratelimit config files; their
	// domains join the rate_limit section's. Watched for changes.
	RateLimitConfig string `yaml:"ratelimit_config"`
	// MergeDomainConfig merges files of one domain (envoyproxy/ratelimit's
	// MERGE_DOMAIN_CONFIG).
	MergeDomainConfig bool `yaml:"merge_domain_config"`
	RLS               struct {
		envoy.RateLimitConfig `yaml:",inline"`
		Enabled               *bool `yaml:"enabled"` // default true
		// PeerStats exports envoyproxy/ratelimit's stat names (peerstats.go); NearLimitRatio
		// is its NEAR_LIMIT_RATIO (default 0.8).
		PeerStats      bool    `yaml:"peer_stats"`
		NearLimitRatio float32 `yaml:"near_limit_ratio"`
		// Unavailable is the answer when a fail_closed domain's store cannot decide:
		// "decision" (OVER_LIMIT, the default) or "error" (UNAVAILABLE, for Envoy's
		// failure_mode_deny: true).
		Unavailable string `yaml:"unavailable"`
	} `yaml:"rls"`
	ExtAuthz struct {
		envoy.AuthConfig `yaml:",inline"`
		Enabled          *bool `yaml:"enabled"` // default true
	} `yaml:"ext_authz"`
	// ListenAddr, when set, serves the two Envoy services (and health) on a separate
	// listener too, with the same server options. Read at start only.
	ListenAddr string `yaml:"listen_addr"`
}

// envoyState is what the app keeps of the Envoy adapters: they are registered once and
// reconfigured on reload.
type envoyState struct {
	auth *envoy.AuthServer
	rls  *envoy.RateLimitServer
	// pending is the adapters' config built by the last build, applied by applyEnvoy.
	pendingAuth envoy.AuthConfig
	pendingRLS  envoy.RateLimitConfig
}

func decodeEnvoy(cfg *config.File) (envoySection, error) {
	var y envoySection
	if err := cfg.Envoy.Decode("envoy", &y); err != nil {
		return y, err
	}
	return y, nil
}

// buildEnvoy reads the envoy section: the adapters' settings, and the envoyproxy/ratelimit
// files whose domains it merges into the limiter the rate_limit section built (it runs after
// it). The settings are applied to the running adapters here: this builder is the last one,
// so a build that reaches it succeeds.
func (a *app) buildEnvoy(cfg *config.File, d *service.Deps) error {
	y, err := decodeEnvoy(cfg)
	if err != nil {
		return err
	}
	authCfg := y.ExtAuthz.AuthConfig
	authCfg.Disabled = y.ExtAuthz.Enabled != nil && !*y.ExtAuthz.Enabled
	authCfg.Logger, authCfg.Identity = a.log, d.Headers.Identity // authn.identity_headers (built before)
	// Both gRPC servers marshal with envoy.Codec (serverOptions), which hands an answer back
	// once written, and no stats handler reads a sent message: an allow allocates no answer,
	// nor an RLS decision its request and answer.
	authCfg.ReuseAnswers = true
	rlsCfg := y.RLS.RateLimitConfig
	rlsCfg.ReuseAnswers = true
	rlsCfg.Disabled = y.RLS.Enabled != nil && !*y.RLS.Enabled
	switch y.RLS.Unavailable {
	case "", "decision":
	case "error":
		rlsCfg.UnavailableAsError = true
	default:
		return cfg.Envoy.Errorf("envoy.rls.unavailable", "must be decision or error, not %q", y.RLS.Unavailable)
	}

	if y.RateLimitConfig != "" {
		path := y.RateLimitConfig
		if !filepath.IsAbs(path) && cfg.Path != "" {
			path = filepath.Join(filepath.Dir(cfg.Path), path)
		}
		files, err := rlconfig.LoadOptions(path, rlconfig.Options{MergeDomains: y.MergeDomainConfig})
		if err != nil {
			return err // names the ratelimit file, line and field
		}
		own, err := rateLimitDomains(cfg.RateLimit)
		if err != nil {
			return err
		}
		for _, f := range files {
			for _, o := range own {
				if o.Name == f.Name {
					return cfg.Envoy.Errorf("envoy.ratelimit_config", "domain %q is defined both in %s and in the rate_limit section", f.Name, path)
				}
			}
		}
		if d.Limiter == nil {
			return cfg.Envoy.Errorf("envoy.ratelimit_config", "no limiter was built (rate_limit section)")
		}
		observe("envoy.domains", append(own, files...))
		if err := d.Limiter.SetDomains(append(own, files...)); err != nil {
			var ce *fielderr.Error
			if errors.As(err, &ce) {
				return cfg.Envoy.Errorf("envoy.ratelimit_config", "%s: %v", path, err)
			}
			return err
		}
	}
	observe("envoy.ext_authz", authCfg)
	observe("envoy.rls", rlsCfg)
	a.envoy.pendingAuth, a.envoy.pendingRLS = authCfg, rlsCfg
	if a.envoy.auth != nil {
		a.applyEnvoy()
	}
	return nil
}

// applyEnvoy applies the last built settings to the registered adapters.
func (a *app) applyEnvoy() {
	a.envoy.auth.SetConfig(a.envoy.pendingAuth)
	a.envoy.rls.SetConfig(a.envoy.pendingRLS)
}

// startEnvoy registers the ext_authz and RLS services on Warden's gRPC server (they answer
// UNIMPLEMENTED while disabled) and, when envoy.listen_addr is set, on a second server with
// the same options on that address, whose run function it returns. It also returns the
// watcher of envoy.ratelimit_config. Either is nil when not configured.
func (a *app) startEnvoy(opts []grpc.ServerOption) (server, watch runFunc, err error) {
	var checker envoy.Checker = decisionChecker{a.srv, &a.tel.rpc.d}
	if a.tel.tp != nil {
		checker = tracedChecker{checker, a.tel.tracer()}
	}
	a.envoy.auth = envoy.NewAuthServer(checker, a.envoy.pendingAuth)
	a.envoy.rls = envoy.NewRateLimitServer(a.srv, a.envoy.pendingRLS)
	register := func(s *grpc.Server) {
		var auth authv3.AuthorizationServer = a.envoy.auth
		var rls rlsv3.RateLimitServiceServer = timedRLS{a.envoy.rls, &a.peer}
		if tr := a.tel.tracer(); tr != nil {
			auth, rls = tracedAuth{auth, tr}, tracedRLS{rls, tr}
		}
		authv3.RegisterAuthorizationServer(s, auth)
		rlsv3.RegisterRateLimitServiceServer(s, rls)
	}
	register(a.grpc)
	for _, name := range []string{authv3.Authorization_ServiceDesc.ServiceName, rlsv3.RateLimitService_ServiceDesc.ServiceName} {
		a.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	y, err := decodeEnvoy(a.cfg)
	if err != nil {
		return nil, nil, err
	}
	if cfgPath := a.cfg.Path; y.RateLimitConfig != "" && cfgPath != "" {
		watch = a.watchRateLimitConfig(cfgPath, relativeTo(cfgPath, y.RateLimitConfig))
	}
	if y.ListenAddr == "" {
		return nil, watch, nil
	}
	lis, err := net.Listen("tcp", y.ListenAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("envoy listener: %w", err)
	}
	s := grpc.NewServer(opts...)
	register(s)
	healthpb.RegisterHealthServer(s, a.health)
	a.log.Info("envoy services listening", "addr", lis.Addr().String())
	a.closers = append(a.closers, func() { s.Stop(); lis.Close() })
	sc := a.cfg.Server
	return serveGRPC("envoy grpc", s, a.streams.Listener(lis), a.stopping, sc.Drain, sc.ShutdownTimeout, a.log), watch, nil
}

// watchRateLimitConfig returns the run function that reloads the whole config (as SIGHUP
// does) when a file in the ratelimit config directory (or the file's directory) changes.
func (a *app) watchRateLimitConfig(cfgPath, path string) runFunc {
	dir := path
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		dir = filepath.Dir(path)
	}
	r := &reloader{app: a, path: cfgPath, log: a.log}
	return watchDir(dir, "ratelimit config", a.log, func(ctx context.Context) { r.reload(ctx, true) })
}
