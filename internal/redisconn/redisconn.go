// Package redisconn builds Warden's go-redis client from the config file's redis section
// (single node, Sentinel or Cluster; TLS; username and password), checks the connection at
// start with an error that says what to fix, and tracks Redis health for readiness.
//
// It knows nothing of what Warden stores in Redis.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/config"
)

// pipelineBuffer is the read and the write buffer of each pipeline connection (go-redis's
// default is 128 KiB each). A rate-limit round trip carries one script call with the Takes of
// a batch (7-9 on average under the bench's closed loop, at most 64, each a key and a few
// numbers), and its reply is an array of small integers: 4 KiB holds the common batch in one
// write and one read, and a rare larger one is written or read in two. With the default, 16
// pipelines held 3.2 MiB of buffers under a closed-loop load, most of the live heap, which the
// heap's GC target doubles; at 16 KiB they still held 0.5 MiB.
const pipelineBuffer = 4 << 10

// connBuffer is the read and the write buffer of each connection of the main pool (go-redis's
// default is 32 KiB each): its commands are single script calls (a lone Take), API-key
// lookups, Pub/Sub announcements and health checks, all well under a KiB. A larger reply is
// still read whole (bulk replies go around the buffer), only with more reads.
const connBuffer = 4 << 10

// New builds a client for c. It does not connect; call Check. Its pipeline pool has a
// connection for each of c.Pipelines (go-redis's default of 10 when 0), with
// pipelineBuffer-sized buffers; its main pool's connections have connBuffer-sized ones. onConnect, if given, run in
// order on every new connection (go-redis's OnConnect), e.g. to load scripts.
func New(c config.Redis, onConnect ...func(context.Context, *redis.Conn) error) (redis.UniversalClient, error) {
	tlsCfg, err := tlsConfig(c.TLS)
	if err != nil {
		return nil, err
	}
	var hook func(context.Context, *redis.Conn) error
	if len(onConnect) > 0 {
		hook = func(ctx context.Context, cn *redis.Conn) error {
			for _, f := range onConnect {
				if err := f(ctx, cn); err != nil {
					return err
				}
			}
			return nil
		}
	}
	switch c.Mode {
	case "single":
		return redis.NewClient(&redis.Options{
			Addr: c.Addrs[0], Username: c.Username, Password: c.Password.Reveal(), DB: c.DB,
			PoolSize: c.PoolSize, ReadBufferSize: connBuffer, WriteBufferSize: connBuffer, DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout,
			WriteTimeout: c.WriteTimeout, TLSConfig: tlsCfg, ContextTimeoutEnabled: true, OnConnect: hook,
			PipelinePoolSize: c.Pipelines, PipelineReadBufferSize: pipelineBuffer, PipelineWriteBufferSize: pipelineBuffer,
		}), nil
	case "sentinel":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.MasterName, SentinelAddrs: c.Addrs, SentinelPassword: c.SentinelPassword.Reveal(),
			Username: c.Username, Password: c.Password.Reveal(), DB: c.DB,
			PoolSize: c.PoolSize, ReadBufferSize: connBuffer, WriteBufferSize: connBuffer, DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout,
			WriteTimeout: c.WriteTimeout, TLSConfig: tlsCfg, ContextTimeoutEnabled: true, OnConnect: hook,
			PipelinePoolSize: c.Pipelines, PipelineReadBufferSize: pipelineBuffer, PipelineWriteBufferSize: pipelineBuffer,
		}), nil
	case "cluster":
		if c.DB != 0 {
			return nil, errors.New("redis: cluster mode has no databases: db must be 0")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: c.Addrs, Username: c.Username, Password: c.Password.Reveal(),
			PoolSize: c.PoolSize, ReadBufferSize: connBuffer, WriteBufferSize: connBuffer, DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout,
			WriteTimeout: c.WriteTimeout, TLSConfig: tlsCfg, ContextTimeoutEnabled: true, OnConnect: hook,
			PipelinePoolSize: c.Pipelines, PipelineReadBufferSize: pipelineBuffer, PipelineWriteBufferSize: pipelineBuffer,
		}), nil
	}
	return nil, fmt.Errorf("redis: no mode configured")
}

func tlsConfig(t config.RedisTLS) (*tls.Config, error) {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" {
			return nil, errors.New("redis.tls: files are set but enabled is false")
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		c.RootCAs = pool
	}
	if t.CertFile != "" || t.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Check pings Redis (every master, for a cluster) and explains a failure in one line.
func Check(ctx context.Context, c redis.UniversalClient, addrs []string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
			return n.Ping(ctx).Err()
		})
	} else {
		err = c.Ping(ctx).Err()
	}
	if err == nil {
		return nil
	}
	hint := ""
	msg := err.Error()
	switch {
	case strings.Contains(msg, "NOAUTH"), strings.Contains(msg, "WRONGPASS"), strings.Contains(msg, "invalid password"):
		hint = " (check redis.username and redis.password)"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "i/o timeout"), strings.Contains(msg, "no such host"):
		hint = " (is Redis running and reachable at that address?)"
	case strings.Contains(msg, "tls"), strings.Contains(msg, "x509"):
		hint = " (check redis.tls)"
	}
	return fmt.Errorf("redis %s: %v%s", strings.Join(addrs, ","), err, hint)
}

// Health tracks whether Redis answers, for /readyz. The zero value is not usable; use
// NewHealth. Safe for concurrent use.
type Health struct {
	c        redis.UniversalClient
	addrs    []string
	interval time.Duration
	log      *slog.Logger
	checks   []func(context.Context) error
	ok       atomic.Bool
}

// NewHealth returns a Health that starts healthy (New callers Check first). Besides the ping
// of Check, each round runs checks (e.g. that a store's scripts are loaded, so that healthy
// means the store can decide).
func NewHealth(c redis.UniversalClient, addrs []string, interval time.Duration, log *slog.Logger, checks ...func(context.Context) error) *Health {
	if interval <= 0 {
		interval = time.Second
	}
	h := &Health{c: c, addrs: addrs, interval: interval, log: log, checks: checks}
	h.ok.Store(true)
	return h
}

// Healthy reports the last check's result.
func (h *Health) Healthy() bool { return h.ok.Load() }

// Run checks Redis every interval until ctx ends, logging each change.
func (h *Health) Run(ctx context.Context) error {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := Check(ctx, h.c, h.addrs)
		for _, check := range h.checks {
			if err == nil {
				err = check(ctx)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		was := h.ok.Swap(err == nil)
		switch {
		case was && err != nil:
			h.log.Error("redis unhealthy", "err", err)
		case !was && err == nil:
			h.log.Info("redis healthy again")
		}
	}
}
