package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/clients/envoy"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/redisconn"
	"github.com/wardenhq/warden/internal/streamguard"
	"github.com/wardenhq/warden/limiter/redisstore"
	"github.com/wardenhq/warden/service"
)

// addrs is what run reports once it listens (tests use it).
type addrs struct {
	GRPC, Admin string
	// pprof: the admin listener serves /debug/pprof (server.pprof).
	pprof bool
	// gcHeadroom is server.gc_headroom (main's GC pacer).
	gcHeadroom int
}

// run is the whole server. It returns when ctx ends (after a graceful shutdown) or on a
// start-up error. ready, if not nil, is called once the listeners are open.
func run(ctx context.Context, args []string, env config.Env, stderr io.Writer, ready func(addrs)) error {
	return runWith(ctx, args, env, stderr, ready, nil)
}

// runWith is run, with spans (when not nil) receiving every sampled span as it ends.
func runWith(ctx context.Context, args []string, env config.Env, stderr io.Writer, ready func(addrs), spans sdktrace.SpanExporter) error {
	fs := flag.NewFlagSet("warden", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path to the YAML config file (none: loopback, in-memory store)")
	grpcAddr := fs.String("grpc-addr", "", "override server.grpc_addr (e.g. 127.0.0.1:0)")
	adminAddr := fs.String("admin-addr", "", "override server.admin_addr (\"off\" disables it)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		if p, ok := env("WARDEN_CONFIG"); ok {
			*configPath = p
		}
	}
	cfg, err := config.Load(*configPath, env)
	if err != nil {
		return err
	}
	if *grpcAddr != "" {
		cfg.Server.GRPCAddr = *grpcAddr
	}
	if *adminAddr != "" {
		cfg.Server.AdminAddr = *adminAddr
	}
	log, level := newLogger(stderr, cfg.Log)

	a := &app{log: log, level: level, cfg: cfg, env: env, spans: spans, stopping: make(chan struct{})}
	defer a.close()
	if err := a.start(ctx); err != nil {
		return err
	}
	cfg.Release() // every section is decoded: drop the YAML trees
	releaseGarbage()
	return a.serve(ctx, ready)
}

// releaseGarbage collects and returns to the OS what reading a config left behind. Decoding
// the YAML allocates about ten times what the built config keeps (11 MiB for the bench's
// config of 1,000 API keys, of which 1.5 MiB stays live); without this the heap keeps
// that peak's pages, and its next GC target is twice the peak: 7–8 MiB of the idle RSS
// was that garbage. It runs once after the start and after each reload, never per call.
func releaseGarbage() { debug.FreeOSMemory() }

// newLogger returns the process's logger and its level, which AdminService.SetLogLevel
// changes at run time. The audit log (the loggers With "log", "audit") is written at info
// and above whatever the level.
func newLogger(w io.Writer, c config.Log) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	level.Set(lvl)
	opts := &slog.HandlerOptions{Level: slog.LevelDebug} // levelHandler decides
	var h slog.Handler = slog.NewJSONHandler(w, opts)
	if c.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	}
	// A line logged while handling a call carries its request_id and, when sampled, trace_id.
	return slog.New(levelHandler{Handler: ctxHandler{h}, level: level}), level
}

// levelHandler filters records by a level that can change, except audit records.
type levelHandler struct {
	slog.Handler
	level *slog.LevelVar
	audit bool
}

func (h levelHandler) Enabled(_ context.Context, l slog.Level) bool {
	if h.audit {
		return l >= slog.LevelInfo
	}
	return l >= h.level.Level()
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	audit := h.audit
	for _, a := range as {
		audit = audit || a.Key == "log" && a.Value.String() == "audit"
	}
	return levelHandler{Handler: h.Handler.WithAttrs(as), level: h.level, audit: audit}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{Handler: h.Handler.WithGroup(name), level: h.level, audit: h.audit}
}

// app holds what one run of the server owns (lifecycle.go names the parts of its life).
type app struct {
	log   *slog.Logger
	level *slog.LevelVar // log's, changed by AdminService.SetLogLevel
	env   config.Env
	spans sdktrace.SpanExporter // for tests: see runWith

	mu  sync.Mutex // guards cfg, jwt, gen, genCtx and next during reloads
	cfg *config.File

	redis       redis.UniversalClient
	redisHealth *redisconn.Health
	tel         *telemetry
	srv         *service.Server
	grpc        *grpc.Server
	streams     *streamguard.Guard // every gRPC listener's connections
	health      *health.Server
	stores      stores
	envoy       envoyState
	peer        peerExport // envoyproxy/ratelimit's stat names, when on

	// servers and runs are the process's run functions, collected by start: the servers stop
	// first (after the drain, once stopping closes), then the runs.
	servers, runs []runFunc
	stopping      chan struct{}
	closers       []func()

	// gen is the running config's generation, started under genCtx; next is what the
	// builders collect for the config being built.
	gen    *generation
	genCtx context.Context
	next   building
	// jwt is the running config's JWT verifier (nil without one), whose key sets the next
	// config's verifier starts from.
	jwt *jwtauth.Verifier
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func (a *app) start(ctx context.Context) error {
	cfg := a.cfg
	var err error
	if a.tel, err = newTelemetry(cfg.Telemetry, a.env, a.spans); err != nil {
		return err
	}
	a.closers = append(a.closers, a.tel.close)
	if err := a.openRedis(ctx); err != nil {
		return err
	}
	runs, err := a.openStores(ctx)
	if err != nil {
		return err
	}
	a.runs = append(a.runs, runs...)
	deps, gen, err := a.build(ctx, cfg)
	if err != nil {
		return err
	}
	a.gen, a.jwt = gen, a.next.jwt
	a.tel.setJWT(a.jwt)
	a.peer.configLoaded(nil)
	a.srv = service.New(service.Config{Logger: a.log, Deps: deps,
		MaxHeaders: cfg.Server.MaxRequestHeaders, MaxHeaderBytes: cfg.Server.MaxRequestHeaderBytes, Tracer: a.tel.tracer()})
	a.tel.setConfigVersion(cfg.Version)

	opts, err := a.serverOptions()
	if err != nil {
		return err
	}
	a.grpc = grpc.NewServer(opts...)
	// Its stream workers live until Stop: a start that fails later, or an app that never
	// serves, must not leave them behind (after serveGRPC's stop this is a no-op).
	a.closers = append(a.closers, a.grpc.Stop)
	wardenv1.RegisterWardenServiceServer(a.grpc, a.srv)
	wardenv1.RegisterAdminServiceServer(a.grpc, service.NewAdmin(a.srv, a.reloadFunc()).WithLogLevel(a.level))
	a.health = health.NewServer()
	healthpb.RegisterHealthServer(a.grpc, a.health)
	reflection.Register(a.grpc)
	for _, name := range []string{"", wardenv1.WardenService_ServiceDesc.ServiceName, wardenv1.AdminService_ServiceDesc.ServiceName} {
		a.health.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	envoySrv, watch, err := a.startEnvoy(opts)
	if err != nil {
		return err
	}
	if envoySrv != nil {
		a.servers = append(a.servers, envoySrv)
	}
	if watch != nil {
		a.runs = append(a.runs, watch)
	}
	a.tel.rpc.addMethods(a.grpc) // every service is registered: before serving
	return nil
}

// openRedis connects to Redis when it is configured.
func (a *app) openRedis(ctx context.Context) error {
	rc := a.cfg.Redis
	if rc.Mode == "" {
		return nil
	}
	if rc.Pipelines <= 0 {
		rc.Pipelines = redisstore.DefaultPipelines
	}
	if rc.PoolSize <= 0 {
		// go-redis's default, with room for every rate-limit pipeline and other work.
		rc.PoolSize = max(10*runtime.GOMAXPROCS(0), rc.Pipelines+8)
	}
	// Every new connection (after a restart, a failover, in each Cluster node) loads the
	// rate-limit script before its first command.
	var err error
	if a.redis, err = redisconn.New(rc, redisstore.OnConnect); err != nil {
		return err
	}
	a.closers = append(a.closers, func() { _ = a.redis.Close() })
	if err := a.tel.observeRedisPool(a.redis); err != nil {
		return err
	}
	hook, err := a.tel.redisCommandHook(rc.KeyPrefix)
	if err != nil {
		return err
	}
	a.redis.AddHook(hook)
	return redisconn.Check(ctx, a.redis, a.cfg.Redis.Addrs)
}

// serverOptions are the options of every gRPC server: limits, keepalive, interceptors, TLS.
func (a *app) serverOptions() ([]grpc.ServerOption, error) {
	sc := a.cfg.Server
	a.streams = streamguard.New(streamguard.Config{Rate: sc.StreamRate, Burst: sc.StreamBurst,
		ResetRate: sc.StreamResetRate, Penalty: sc.StreamPenalty})
	if err := a.tel.observeStreams(a.streams); err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(sc.MaxRecvBytes),
		grpc.MaxConcurrentStreams(sc.MaxConcurrentStreams),
		grpc.InTapHandle(a.streams.TapHandle),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             sc.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		// Metrics, request ids, recovery: one interceptor (see unaryStack).
		grpc.UnaryInterceptor(unaryStack{a.tel.rpc, service.RecoverUnary(a.log)}.intercept),
		grpc.ChainStreamInterceptor(a.tel.rpc.stream, service.RecoverStream(a.log)),
	}
	opts = append(opts, transportOptions()...)
	// The proto codec, with a fast decoder of Envoy's ext_authz requests and a fast encoder
	// of its answers, which hands each ext_authz and RLS answer back for reuse once written
	// (envoy.AuthConfig and RateLimitConfig.ReuseAnswers: the stats handler must not read
	// sent messages; otelgrpc's does not).
	opts = append(opts, grpc.ForceServerCodecV2(envoy.Codec{}))
	if h := a.tel.statsHandler(); h != nil {
		opts = append(opts, grpc.StatsHandler(h))
	}
	creds, err := serverCreds(sc.TLS)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		opts = append(opts, grpc.Creds(a.streams.Credentials(creds)))
	}
	return opts, nil
}

// listen opens the gRPC listener and the admin one (unless server.admin_addr is "off"), and
// adds their servers' run functions.
func (a *app) listen() (addrs, error) {
	sc := a.cfg.Server
	lis, err := net.Listen("tcp", sc.GRPCAddr)
	if err != nil {
		return addrs{}, fmt.Errorf("grpc listener: %w", err)
	}
	a.closers = append(a.closers, func() { lis.Close() })
	got := addrs{GRPC: lis.Addr().String(), pprof: sc.Pprof && sc.AdminAddr != "off", gcHeadroom: sc.GCHeadroom}
	a.servers = append(a.servers, serveGRPC("grpc", a.grpc, a.streams.Listener(lis), a.stopping, sc.Drain, sc.ShutdownTimeout, a.log))
	if sc.AdminAddr == "off" {
		return got, nil
	}
	adminLis, err := net.Listen("tcp", sc.AdminAddr)
	if err != nil {
		return addrs{}, fmt.Errorf("admin listener: %w", err)
	}
	a.closers = append(a.closers, func() { adminLis.Close() })
	got.Admin = adminLis.Addr().String()
	httpSrv := &http.Server{Handler: a.adminHandler(), ReadHeaderTimeout: 5 * time.Second}
	a.runs = append(a.runs, serveHTTP("admin http", httpSrv, adminLis))
	return got, nil
}

// serve runs every run function in one group until ctx ends or one fails, then shuts down in
// order: health reports NOT_SERVING, the servers drain and stop, then the rest stops.
func (a *app) serve(ctx context.Context, ready func(addrs)) error {
	cfg := a.cfg
	got, err := a.listen()
	if err != nil {
		return err
	}
	store := "in-memory (single replica)"
	if a.redis != nil {
		store = "redis " + cfg.Redis.Mode
	}
	a.log.Info("warden listening", "grpc", got.GRPC, "admin_http", got.Admin, "store", store, "config", cfg.Path)
	if cfg.Path == "" {
		a.log.Info("no config file: try `grpcurl -plaintext " + got.GRPC + " grpc.health.v1.Health/Check` and `grpcurl -plaintext " + got.GRPC + " list`; see README.md for the config reference")
	} else {
		r := &reloader{app: a, path: cfg.Path, log: a.log}
		a.runs = append(a.runs, r.runs()...)
	}

	g := newRunGroup()
	a.mu.Lock()
	a.genCtx = g.rest
	a.gen.start(g.rest, a.log)
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.gen.stop()
		a.mu.Unlock()
	}()
	for _, s := range a.servers {
		g.server(s)
	}
	for _, r := range a.runs {
		g.run(r)
	}
	if ready != nil {
		ready(got)
	}

	// Wait for a stop signal (or a component failing), then shut down in order.
	select {
	case <-ctx.Done():
		a.log.Info("shutting down: reporting NOT_SERVING, then draining", "drain", cfg.Server.Drain)
	case <-g.ctx.Done():
		a.log.Error("a component failed; shutting down")
	}
	a.health.Shutdown() // every service NOT_SERVING
	close(a.stopping)
	err = g.wait()
	a.log.Info("stopped")
	return err
}
