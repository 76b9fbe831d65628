package main

// Warden's lifecycle, in one vocabulary:
//
//   - A runFunc is work that runs until its context ends and then returns nil: a server, a
//     store's janitor, a health probe, a watcher, a config's JWKS refresh. Builders return
//     theirs; start collects them.
//   - The process's run functions run in one errgroup (runGroup) and stop in two steps: the
//     servers first (serveGRPC: they drain, then stop within a bound), then the rest.
//   - A config's own run functions form a generation: it starts when the config becomes the
//     running one and stops when a reload swaps in the next (what the builders collect for
//     the config being built is app.next).
//   - closers release what start opened, in reverse order, once every run function returned.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authn/jwtauth"
	"github.com/wardenhq/warden/internal/budget"
)

// runFunc is work that runs until ctx ends (then it returns nil) or fails.
type runFunc func(ctx context.Context) error

// runGroup runs the process's run functions in one errgroup: a failing one stops them all.
// Servers stop first, when stopping closes (or a run function fails); the others stop once
// every server has returned, so that the admin listener, the stores' janitors and the running
// config's background work outlive the drain.
type runGroup struct {
	g       *errgroup.Group
	ctx     context.Context // the servers': ends when a run function fails
	rest    context.Context // the others': ends after the servers
	stop    context.CancelFunc
	servers sync.WaitGroup
}

func newRunGroup() *runGroup {
	g, ctx := errgroup.WithContext(context.Background())
	rest, stop := context.WithCancel(ctx)
	return &runGroup{g: g, ctx: ctx, rest: rest, stop: stop}
}

// server runs a server's run function.
func (r *runGroup) server(f runFunc) {
	r.servers.Add(1)
	r.g.Go(func() error {
		defer r.servers.Done()
		return f(r.ctx)
	})
}

// run runs a run function that stops after the servers.
func (r *runGroup) run(f runFunc) {
	r.g.Go(func() error { return f(r.rest) })
}

// wait waits for the servers to stop, then stops the rest and returns the first error.
func (r *runGroup) wait() error {
	r.servers.Wait()
	r.stop()
	return r.g.Wait()
}

// serveGRPC returns the run function of gRPC server s on lis (spicedb's
// RunnableGRPCServer): it serves until stopping closes or ctx ends. On stopping (Warden shuts
// down and its health service already reports NOT_SERVING) it serves on for drain, so that
// clients and load balancers move away, unless ctx ends first; then it stops gracefully, and
// closes the connections left after stopTimeout. name prefixes its errors.
func serveGRPC(name string, s *grpc.Server, lis net.Listener, stopping <-chan struct{}, drain, stopTimeout time.Duration, log *slog.Logger) runFunc {
	return func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- s.Serve(lis) }()
		select {
		case err := <-served:
			return serveErr(name, err, grpc.ErrServerStopped)
		case <-stopping:
			t := time.NewTimer(drain)
			select {
			case <-t.C:
			case <-ctx.Done(): // a component failed: stop now
				t.Stop()
			}
		case <-ctx.Done():
		}
		stopped := make(chan struct{})
		go func() { s.GracefulStop(); close(stopped) }()
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-stopped:
		case <-t.C:
			log.Warn("graceful stop timed out; closing connections", "server", name, "timeout", stopTimeout)
			s.Stop()
			<-stopped
		}
		return serveErr(name, <-served, grpc.ErrServerStopped)
	}
}

// serveHTTP returns the run function of HTTP server s on lis: it serves until ctx ends, then
// shuts down within a second.
func serveHTTP(name string, s *http.Server, lis net.Listener) runFunc {
	return func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- s.Serve(lis) }()
		select {
		case err := <-served:
			return serveErr(name, err, http.ErrServerClosed)
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Shutdown(sctx)
		return serveErr(name, <-served, http.ErrServerClosed)
	}
}

// serveErr is a Serve method's error, nil when it only says the server was stopped.
func serveErr(name string, err, stopped error) error {
	if err == nil || errors.Is(err, stopped) {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

// debounceWait is how long a watched directory must stay quiet before watchDir reports a
// change: an editor's save or a ConfigMap's symlink swap is a burst of events.
const debounceWait = 100 * time.Millisecond

// watchDir returns the run function that calls changed once the files in dir stop changing
// (debounceWait after the last event). It watches the directory, not a file, because editors
// and Kubernetes ConfigMaps replace files by rename or symlink swap. When dir cannot be
// watched it logs why (what names it) and returns: SIGHUP still reloads.
func watchDir(dir, what string, log *slog.Logger, changed func(context.Context)) runFunc {
	return func(ctx context.Context) error {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return err
		}
		defer w.Close()
		if err := w.Add(dir); err != nil {
			log.Warn("cannot watch the "+what+"; reload with SIGHUP", "path", dir, "err", err)
			return nil
		}
		debounce(ctx, w.Events, w.Errors, debounceWait, func(err error) {
			log.Warn(what+" watch error", "err", err)
		}, changed)
		return nil
	}
}

// debounce calls changed wait after the last of a burst of events, and watchErr for each
// error, until ctx ends or a channel closes.
func debounce[E any](ctx context.Context, events <-chan E, errs <-chan error, wait time.Duration,
	watchErr func(error), changed func(context.Context)) {
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			quiet = time.After(wait)
		case err, ok := <-errs:
			if !ok {
				return
			}
			watchErr(err)
		case <-quiet:
			quiet = nil
			changed(ctx)
		}
	}
}

// relativeTo resolves p against the directory of the config file (p itself when absolute or
// without a config file).
func relativeTo(configPath, p string) string {
	if p == "" || filepath.IsAbs(p) || configPath == "" {
		return p
	}
	return filepath.Join(filepath.Dir(configPath), p)
}

// building is what the builders collect for the config being built (app.next); build turns
// it into that config's generation.
type building struct {
	runs   []runFunc         // its background work (JWKS refresh, cache invalidation)
	guards []*budget.Guard   // its dependency guards, for metrics
	keys   *authn.APIKeys    // its API-key authenticator (nil without one)
	jwt    *jwtauth.Verifier // its JWT verifier (nil without one)
}

// generation is one config's background work: it runs while that config is the running one.
type generation struct {
	runs   []runFunc
	cancel context.CancelFunc
	done   chan struct{}
}

// start runs the generation's work until stop. Failures are logged: a JWKS endpoint that is
// down must not stop Warden.
func (g *generation) start(parent context.Context, log *slog.Logger) {
	ctx, cancel := context.WithCancel(parent)
	g.cancel, g.done = cancel, make(chan struct{})
	go func() {
		defer close(g.done)
		var wg sync.WaitGroup
		for _, r := range g.runs {
			wg.Go(func() {
				if err := r(ctx); err != nil && ctx.Err() == nil {
					log.Error("background task stopped", "err", err)
				}
			})
		}
		wg.Wait()
	}()
}

// stop stops a started generation's work and waits for it.
func (g *generation) stop() {
	if g == nil || g.cancel == nil {
		return
	}
	g.cancel()
	<-g.done
}
