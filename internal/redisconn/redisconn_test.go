package redisconn_test

import (
	"context"
	"strings"
	"testing"

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
