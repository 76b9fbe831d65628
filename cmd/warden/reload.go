package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"

	"go.opentelemetry.io/otel/metric"

	"github.com/wardenhq/warden/internal/config"
)

// reloader re-reads the config file when it changes (or on SIGHUP) and swaps the service's
// capabilities. An invalid file keeps the running config and logs why. It watches the
// directory, not the file, because editors and Kubernetes ConfigMaps replace files by rename
// or symlink swap.
type reloader struct {
	app  *app
	path string
	log  *slog.Logger
}

// runs returns the reloader's run functions: the config directory's watcher and the SIGHUP
// handler. SIGHUP is caught from now on, not only once they run.
func (r *reloader) runs() []runFunc {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	onHUP := func(ctx context.Context) error {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				r.reload(ctx, true)
			}
		}
	}
	changed := func(ctx context.Context) { r.reload(ctx, false) }
	return []runFunc{watchDir(filepath.Dir(r.path), "config directory", r.log, changed), onHUP}
}

// reload reads the file and applies it if it changed (or always, when forced).
func (r *reloader) reload(ctx context.Context, force bool) { _ = r.reloadErr(ctx, force) }

// reloadErr reloads (see reload). When it parsed a file, valid or not, it then returns the
// garbage of reading it to the OS (see releaseGarbage), outside the reload's lock.
func (r *reloader) reloadErr(ctx context.Context, force bool) error {
	parsed, err := r.apply(ctx, force)
	if parsed {
		releaseGarbage()
	}
	return err
}

// apply reads the file and applies it if it changed (or always, when forced); parsed says
// whether it got as far as parsing it.
func (r *reloader) apply(ctx context.Context, force bool) (parsed bool, _ error) {
	a := r.app
	data, err := os.ReadFile(r.path)
	if err != nil {
		r.fail(err)
		return false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	sum := sha256.Sum256(data)
	if !force && hex.EncodeToString(sum[:8]) == a.cfg.Version {
		return false, nil
	}
	cfg, err := config.Parse(r.path, data, a.env)
	if err != nil {
		r.fail(err)
		return true, err
	}
	deps, next, err := a.build(ctx, cfg)
	if err != nil {
		r.fail(err)
		return true, err
	}
	if !reflect.DeepEqual(cfg.Server, a.cfg.Server) || !reflect.DeepEqual(cfg.Redis, a.cfg.Redis) ||
		cfg.Log != a.cfg.Log || !reflect.DeepEqual(cfg.Telemetry, a.cfg.Telemetry) {
		r.log.Warn("config reload: server, redis, log and telemetry changes take effect at the next restart")
	}
	a.srv.SetDeps(deps)
	a.jwt = a.next.jwt
	a.tel.setJWT(a.jwt)
	old := a.gen
	a.gen = next
	a.gen.start(a.genCtx, a.log)
	old.stop()
	oldVersion := a.cfg.Version
	a.cfg = cfg
	cfg.Release() // every section is decoded: drop the YAML trees
	a.tel.setConfigVersion(cfg.Version)
	a.tel.reloads.Add(ctx, 1, metric.WithAttributes(attrResult("ok")))
	a.peer.configLoaded(nil)
	r.log.Info("config reloaded", "from", oldVersion, "to", cfg.Version)
	return true, nil
}

func (r *reloader) fail(err error) {
	r.app.tel.reloads.Add(context.Background(), 1, metric.WithAttributes(attrResult("error")))
	r.app.peer.configLoaded(err)
	r.log.Error("config reload failed; keeping the running config", "err", err.Error())
}

// reloadFunc is AdminService.ReloadConfig's hook: it re-reads the file now and reports its
// error, if any, to the caller (the running config stays).
func (a *app) reloadFunc() func(ctx context.Context) (string, error) {
	if a.cfg.Path == "" {
		return nil
	}
	return func(ctx context.Context) (string, error) {
		r := &reloader{app: a, path: a.cfg.Path, log: a.log}
		if err := r.reloadErr(ctx, true); err != nil {
			return "", err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.cfg.Version, nil
	}
}
