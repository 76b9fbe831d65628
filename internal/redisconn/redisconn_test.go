package redisconn_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/wardenhq/warden/internal/config"
	"github.com/wardenhq/warden/internal/redisconn"
	"github.com/wardenhq/warden/internal/redistest"
)

func TestSingleWithPassword(t *testing.T) {
	s := redistest.Start(t, "--requirepass", "s3cret-pw")
	ctx := context.Background()

	good := config.Redis{Mode: "single", Addrs: []string{s.Addr()}, Password: config.SecretValue("s3cret-pw")}
	c, err := redisconn.New(good)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := redisconn.Check(ctx, c, good.Addrs); err != nil {
		t.Fatalf("check with the right password: %v", err)
	}

	bad := good
	bad.Password = config.SecretValue("wrong")
	c2, _ := redisconn.New(bad)
	t.Cleanup(func() { c2.Close() })
	err = redisconn.Check(ctx, c2, bad.Addrs)
	if err == nil || !strings.Contains(err.Error(), "check redis.username and redis.password") {
		t.Fatalf("wrong password: got %v, want a hint about credentials", err)
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "password wrong") {
		t.Fatalf("error leaks the password: %v", err)
	}

	s.Stop()
	err = redisconn.Check(ctx, c, good.Addrs)
	if err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("stopped server: got %v, want an error naming %s", err, s.Addr())
	}
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t)
	cfg := config.Redis{Mode: "cluster", Addrs: cl.Addrs()[:1]}
	c, err := redisconn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := redisconn.Check(context.Background(), c, cfg.Addrs); err != nil {
		t.Fatalf("check cluster: %v", err)
	}
}

// Each rate-limit pipeline gets a connection of go-redis's pipeline pool, with buffers sized
// for a batch (4 KiB) instead of go-redis's 128 KiB each way: 16 pipelines held 3.2 MiB of
// buffers under load, most of the live heap, which the GC's target doubles. The main pool's
// connections (lone Takes, API-key lookups, Pub/Sub, health) get 4 KiB too, not 32 KiB.
func TestConnectionBuffersAreSmall(t *testing.T) {
	const limit = 4 << 10
	type bufferOpts struct{ read, write, pipeRead, pipeWrite, pool int }
	for _, c := range []config.Redis{
		{Mode: "single", Addrs: []string{"127.0.0.1:1"}, Pipelines: 16},
		{Mode: "sentinel", Addrs: []string{"127.0.0.1:1"}, MasterName: "m", Pipelines: 16},
		{Mode: "cluster", Addrs: []string{"127.0.0.1:1"}, Pipelines: 16},
	} {
		rc, err := redisconn.New(c)
		if err != nil {
			t.Fatal(err)
		}
		var got bufferOpts
		switch rc := rc.(type) {
		case *redis.Client:
			o := rc.Options()
			got = bufferOpts{o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize, o.PipelinePoolSize}
		case *redis.ClusterClient:
			o := rc.Options()
			got = bufferOpts{o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize, o.PipelinePoolSize}
		default:
			t.Fatalf("%s: a %T", c.Mode, rc)
		}
		rc.Close()
		for _, b := range []struct {
			what string
			n    int
		}{{"connection read", got.read}, {"connection write", got.write}, {"pipeline read", got.pipeRead}, {"pipeline write", got.pipeWrite}} {
			if b.n <= 0 || b.n > limit {
				t.Errorf("%s: %s buffer of %d bytes, want 1..%d", c.Mode, b.what, b.n, limit)
			}
		}
		if got.pool < c.Pipelines {
			t.Errorf("%s: pipeline pool of %d connections for %d pipelines", c.Mode, got.pool, c.Pipelines)
		}
	}
}
