// Package redistest starts throwaway redis-server processes for tests: a single node on a free
// loopback port, or a 3-master Redis Cluster on loopback ports. Every server is stopped in
// t.Cleanup. Tests never touch a Redis they did not start (in particular not the one on 6379).
//
// It needs the redis-server and redis-cli binaries (Debian packages redis-server and
// redis-tools); without them a test fails with a message naming the packages.
//
// It knows nothing of Warden: it only runs and stops Redis.
package redistest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const installHint = "redis-server not found in PATH: install the Debian packages redis-server and redis-tools (apt-get install -y redis-server redis-tools)"

// Server is one redis-server process owned by a test. Stop and Start let a test kill Redis
// mid-run and bring it back on the same address. Safe for concurrent use.
type Server struct {
	t    testing.TB
	port int
	dir  string
	args []string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Start starts a redis-server on a free loopback port and returns it. extra arguments are
// passed to redis-server (e.g. "--requirepass", "pw"). The server keeps nothing on disk.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	lookPath(t)
	s := &Server{t: t, dir: t.TempDir(), args: extra}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = freePort(false)
		if err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("redistest: start redis-server: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	return s
}

// Addr is the server's host:port on 127.0.0.1.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Stop kills the server (SIGKILL, as a crash would) and waits for it to exit. Stopping a
// stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart starts a stopped server again on the same port, with an empty data set.
func (s *Server) Restart() {
	s.t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ { // the port may linger briefly after a kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "yes",
	}
	args = append(args, s.args...)
	cmd := exec.Command("redis-server", args...)
	out := &tail{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	if err := waitReady(s.Addr(), password(s.args), 5*time.Second); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("%v; server output: %s", err, out.String())
	}
	s.cmd = cmd
	return nil
}

// Cluster is a Redis Cluster of three masters, and their replicas if asked for, on loopback
// ports.
type Cluster struct {
	// Nodes are the servers: the three first masters, then their replicas (roles change
	// after a failover: see Master and ReplicaOf).
	Nodes []*Server
}

// ClusterConfig configures StartClusterWith. The zero value is the cluster of StartCluster.
type ClusterConfig struct {
	// Replicas is the number of replicas of each master. Default 0.
	Replicas int
	// NodeTimeout is the nodes' cluster-node-timeout: how long a master must be unreachable
	// before its replica is promoted. Default 2s.
	NodeTimeout time.Duration
	// Args are passed to every redis-server (e.g. "--cluster-require-full-coverage", "no").
	Args []string
}

// StartCluster starts a 3-master Redis Cluster on loopback ports, waits until every node
// reports cluster_state:ok, and stops it in t.Cleanup.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterConfig{})
}

// StartClusterWith starts a 3-master Redis Cluster with cfg.Replicas replicas per master,
// waits until every node reports cluster_state:ok and every replica is in sync with its
// master, and stops it in t.Cleanup.
func StartClusterWith(t testing.TB, cfg ClusterConfig) *Cluster {
	t.Helper()
	lookPath(t)
	if _, err := exec.LookPath("redis-cli"); err != nil {
		t.Fatal(installHint)
	}
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = 2 * time.Second
	}
	c := &Cluster{}
	for i := 0; i < 3*(1+cfg.Replicas); i++ {
		args := []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(cfg.NodeTimeout.Milliseconds(), 10),
		}
		s := &Server{t: t, dir: t.TempDir(), args: append(args, cfg.Args...)}
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			if s.port, err = freePort(true); err != nil {
				continue
			}
			if err = s.start(); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("redistest: start cluster node: %v", err)
		}
		t.Cleanup(s.Stop)
		c.Nodes = append(c.Nodes, s)
	}
	args := []string{"--cluster", "create"}
	for _, n := range c.Nodes {
		args = append(args, n.Addr())
	}
	args = append(args, "--cluster-replicas", strconv.Itoa(cfg.Replicas), "--cluster-yes")
	out, err := exec.Command("redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.Nodes {
		for {
			info, err := command(n.Addr(), "", "CLUSTER", "INFO")
			ok := err == nil && strings.Contains(info, "cluster_state:ok")
			if ok && cfg.Replicas > 0 {
				// Every node knows every other one, and a replica has its master's data.
				ok = strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))+"\r")
				repl, err := command(n.Addr(), "", "INFO", "replication")
				ok = ok && err == nil && (strings.Contains(repl, "role:master") || strings.Contains(repl, "master_link_status:up"))
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redistest: cluster node %s not ok: %v %q", n.Addr(), err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// Server returns the node at addr, or nil.
func (c *Cluster) Server(addr string) *Server {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// ReplicaOf returns a node that master's view of the cluster (CLUSTER NODES) names as its
// replica, or nil. Ask it while master runs.
func (c *Cluster) ReplicaOf(master *Server) *Server {
	nodes, err := command(master.Addr(), "", "CLUSTER", "NODES")
	if err != nil {
		return nil
	}
	id := ""
	lines := strings.Split(nodes, "\n")
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 && strings.HasPrefix(f[1], master.Addr()+"@") {
			id = f[0]
		}
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 3 && id != "" && f[3] == id {
			return c.Server(strings.SplitN(f[1], "@", 2)[0])
		}
	}
	return nil
}

// Role is the node's role from INFO replication: "master" or "slave" (an error if it does not
// answer).
func (s *Server) Role() (string, error) {
	info, err := command(s.Addr(), password(s.args), "INFO", "replication")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(info, "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(l), "role:"); ok {
			return r, nil
		}
	}
	return "", errors.New("no role in INFO replication")
}

// Addrs lists the nodes' addresses, for redis.ClusterOptions.Addrs.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr()
	}
	return a
}

func lookPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(installHint)
	}
	return p
}

// freePort finds a loopback port that is free, and, for cluster nodes, whose bus port
// (port+10000) is free too.
func freePort(withBus bool) (int, error) {
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !withBus {
			return port, nil
		}
		if port+10000 > 65535 {
			continue
		}
		lb, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+10000)))
		if err != nil {
			continue
		}
		_ = lb.Close()
		return port, nil
	}
	return 0, errors.New("no free port pair found")
}

func password(args []string) string {
	for i, a := range args {
		if a == "--requirepass" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func waitReady(addr, pass string, within time.Duration) error {
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		var reply string
		if reply, err = command(addr, pass, "PING"); err == nil && reply == "PONG" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready at %s after %v: %v", addr, within, err)
}

// command sends one command in RESP and returns a simple or bulk string reply. It exists so
// that the harness does not depend on the client under test.
func command(addr, pass string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	r := bufio.NewReader(conn)
	if pass != "" {
		if _, err := roundTrip(conn, r, "AUTH", pass); err != nil {
			return "", err
		}
	}
	return roundTrip(conn, r, args...)
}

func roundTrip(conn net.Conn, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", fmt.Errorf("bad bulk reply %q", line)
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
