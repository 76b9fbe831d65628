package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

// buildWarden compiles cmd/warden and the Envoy floor server (bench/floor) with the root
// module's own dependency versions (GOWORK=off), so bench/'s larger module graph never
// reaches the binaries, and the image's build flags. With rev "" it builds the working tree; else the tree of that
// commit, exported with git archive (a commit without bench/floor gets the working tree's).
func buildWarden(ctx context.Context, root, rev, dir string) (warden, floor string, err error) {
	src := root
	if rev != "" {
		src = filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return "", "", err
		}
		sh := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", root, rev, src)
		if out, err := sh.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("git archive %s: %v\n%s", rev, err, out)
		}
	}
	warden = filepath.Join(dir, "warden")
	floor = filepath.Join(dir, "floor")
	floorSrc := src
	if _, err := os.Stat(filepath.Join(src, "bench", "floor")); err != nil {
		floorSrc = root
	}
	for _, b := range []struct{ dir, out, pkg string }{{src, warden, "./cmd/warden"}, {floorSrc, floor, "./bench/floor"}} {
		cmd := exec.CommandContext(ctx, "go", append(append([]string{"build"}, buildFlags...), "-o", b.out, b.pkg)...)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return warden, floor, nil
}

// buildFlags build Warden and the floor as deploy/image/build.sh builds the shipped binary
// (with CGO_ENABLED=0: static, no libc mapped in, about 1 MiB less RSS): without symbol
// tables or DWARF (not mapped at run time), and with grpc-go's tracing (golang.org/x/net/trace)
// left out, whose html/template use makes the linker keep every exported method (5 MiB more
// RSS, see build.sh). TestBuildFlagsAreTheImages checks that build.sh has them.
var buildFlags = []string{"-trimpath", "-tags", "grpcnotrace", "-ldflags=-s -w"}

// pinned returns the command line that runs argv on cpu ("" or no taskset: unpinned).
func pinned(cpu string, argv ...string) []string {
	if cpu == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpu}, argv...)
}

// proc is a child process with the tail of its output kept for error messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	tail *tailBuffer
	done chan struct{} // closed when the process has exited
	err  error         // valid after done
}

func startProc(name string, argv []string, onLine func(string)) (*proc, error) {
	return startProcEnv(name, argv, nil, onLine)
}

// startProcEnv is startProc with env added to this process's environment.
func startProcEnv(name string, argv, env []string, onLine func(string)) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	p := &proc{name: name, cmd: cmd, tail: &tailBuffer{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.tail.add(sc.Text())
			if onLine != nil {
				onLine(sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		p.err = cmd.Wait()
		w.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, then SIGKILL after grace.
func (p *proc) stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) failure(what string) error {
	return fmt.Errorf("%s %s; its last output:\n%s", p.name, what, p.tail)
}

// tailBuffer keeps the last lines written to it.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 20 {
		t.lines = t.lines[1:]
	}
	t.lines = append(t.lines, s)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts a throwaway redis-server on a free loopback port.
func startRedis(cpu string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProc("redis-server", pinned(cpu, "redis-server", "--port", strconv.Itoa(port),
		"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"), nil)
	if err != nil {
		return nil, "", err
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		if pingRedis(addr) == nil {
			return p, addr, nil
		}
		select {
		case <-p.done:
			return nil, "", p.failure("exited")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(time.Second)
			return nil, "", p.failure("did not answer PING within 5s")
		}
	}
}

func pingRedis(addr string) error {
	reply, err := redisCommand(addr, "PING")
	if err != nil {
		return err
	}
	if reply != "PONG" {
		return fmt.Errorf("PING: %q", reply)
	}
	return nil
}

// setup is one Warden process (and its Redis) that serves some rows.
type setup struct {
	label  string // "" for the default setup; else the first row that needed it
	config string
	redis  bool
	server string            // Scenario.Server: "" Warden, "floor" bench/floor
	files  map[string]string // Scenario.Files

	warden    *proc
	redisProc *proc
	grpcAddr  string
	adminAddr string // Warden's admin HTTP (/metrics), on Redis setups only
	redisAddr string
	listening chan [2]string // gRPC and admin addresses
	stopped   bool
	idleRSS   uint64 // the server's VmRSS once it listened, before any load, bytes
	idleSplit rssSplit
	startPeak uint64   // its VmHWM then: the peak of its start (reading its config), bytes
	peak      uint64   // the server's VmHWM after the rounds, bytes
	endSplit  rssSplit // after the rounds
	// pprof turns on Warden's /debug/pprof (server.pprof) and its admin port (-server-profile).
	pprof bool
	// leasePeeks counts the cost-0 CheckRateLimit calls checkLeasedLoad made in leaseDomain.
	leasePeeks int
}

// binaries are the servers the runner starts.
type binaries struct{ warden, floor, peer string }

// Scenario.Server values.
const (
	serverFloor        = "floor"         // bench/floor: empty ext_authz and RLS handlers
	serverFloorEvalsha = "floor-evalsha" // bench/floor: RLS with one EVALSHA per descriptor
	serverFloorBatch   = "floor-batch"   // bench/floor: RLS and ext_authz batched into pipelines
	serverPeer         = "ratelimit"     // envoyproxy/ratelimit (-peer-ratelimit)
)

// peakRSS is the server's (Warden's or the floor's, not Redis's) peak resident set so far,
// VmHWM from /proc/PID/status, in bytes; 0 if unreadable.
func (s *setup) peakRSS() uint64 { return procStatus(s.warden.pid(), "VmHWM:") }

// rss is the server's resident set now, VmRSS, in bytes; 0 if unreadable.
func (s *setup) rss() uint64 { return procStatus(s.warden.pid(), "VmRSS:") }

// rssSplit is a resident set's two parts (/proc/PID/status), in bytes: anon (RssAnon: the Go
// heap, stacks, the runtime's own memory) and file (RssFile: the binary's code and read-only
// data mapped in, and shared libraries; clean pages the kernel can drop and read back, whose
// count varies by a few MiB with the page cache's state).
type rssSplit struct{ anon, file uint64 }

// split is the server's resident set now, by kind.
func (s *setup) split() rssSplit {
	return rssSplit{procStatus(s.warden.pid(), "RssAnon:"), procStatus(s.warden.pid(), "RssFile:")}
}

// procStatus reads a "kB" field of /proc/PID/status in bytes; 0 if unreadable.
func procStatus(pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// key identifies a setup: rows with the same config and Redis share a process.
func setupKey(s Scenario) string {
	return s.Server + "\x00" + strconv.FormatBool(s.Redis) + "\x00" + s.Config
}

// pids are the processes whose CPU a decision costs.
func (s *setup) pids() []int {
	pids := []int{s.warden.pid()}
	if s.redisProc != nil {
		pids = append(pids, s.redisProc.pid())
	}
	return pids
}

func (s *setup) start(bins binaries, dir, cpu string) error {
	err := s.startServer(bins, dir, cpu)
	if err == nil {
		s.idleRSS, s.idleSplit, s.startPeak = s.rss(), s.split(), s.peakRSS()
	}
	return err
}

func (s *setup) startServer(bins binaries, dir, cpu string) error {
	switch s.server {
	case serverFloor:
		return s.listen(startProc("floor", pinned(cpu, bins.floor, "-grpc-addr", "127.0.0.1:0"), s.onListening()))
	case serverFloorEvalsha, serverFloorBatch:
		p, addr, err := startRedis(cpu)
		if err != nil {
			return err
		}
		s.redisProc, s.redisAddr = p, addr
		mode := map[string]string{serverFloorEvalsha: "evalsha", serverFloorBatch: "batch"}[s.server]
		return s.listen(startProc(s.server, pinned(cpu, bins.floor, "-grpc-addr", "127.0.0.1:0", "-redis", addr, "-rls", mode), s.onListening()))
	case serverPeer:
		return s.startPeer(bins.peer, dir, cpu)
	}
	dir, err := os.MkdirTemp(dir, "setup-")
	if err != nil {
		return err
	}
	data := configData{Dir: dir}
	for name, content := range s.files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return err
		}
	}
	if s.redis {
		p, addr, err := startRedis(cpu)
		if err != nil {
			return err
		}
		s.redisProc, s.redisAddr, data.RedisAddr = p, addr, addr
	}
	text := s.config
	if text == "" {
		text = defaultConfig
	}
	if s.pprof {
		text = strings.Replace(text, "server:\n", "server:\n  pprof: true\n", 1)
	}
	tmpl, err := template.New("config").Option("missingkey=error").Parse(text)
	if err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	f, err := os.CreateTemp(dir, "warden-*.yaml")
	if err != nil {
		return err
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}

	// The admin port serves /metrics, which the validity check of Redis rows reads, and
	// /debug/pprof for -server-profile.
	admin := "off"
	if s.redis || s.pprof {
		admin = "127.0.0.1:0"
	}
	return s.listen(startProc("warden", pinned(cpu, bins.warden, "-config", f.Name(), "-grpc-addr", "127.0.0.1:0", "-admin-addr", admin), s.onListening()))
}

// onListening returns the output callback that reads the "warden listening" log line.
func (s *setup) onListening() func(string) {
	s.listening = make(chan [2]string, 1)
	return func(line string) {
		var m struct {
			Msg, GRPC string
			Admin     string `json:"admin_http"`
		}
		if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "warden listening" {
			select {
			case s.listening <- [2]string{m.GRPC, m.Admin}:
			default:
			}
		}
	}
}

// listen waits for the started server's address.
func (s *setup) listen(p *proc, err error) error {
	if err != nil {
		return err
	}
	s.warden = p
	select {
	case a := <-s.listening:
		s.grpcAddr, s.adminAddr = a[0], a[1]
		return nil
	case <-p.done:
		return p.failure("exited at start")
	case <-time.After(30 * time.Second):
		return p.failure(`did not log "warden listening" within 30s`)
	}
}

// stop stops Warden, then Redis. It reports a process that died before it was stopped.
func (s *setup) stop() error {
	s.stopped = true
	var errs []error
	for _, p := range []*proc{s.warden, s.redisProc} {
		if p == nil {
			continue
		}
		select {
		case <-p.done:
			errs = append(errs, p.failure(fmt.Sprintf("exited during the run (%v)", p.err)))
		default:
			p.stop(5 * time.Second)
		}
	}
	return errors.Join(errs...)
}

// profile starts fetching a CPU profile of Warden for d (whole seconds, at least one) into
// path; the returned function waits for it. A failure is logged: the load's figures stand.
func (s *setup) profile(ctx context.Context, path string, d time.Duration, logf func(string, ...any)) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fetchProfile(ctx, s.adminAddr, path, max(int(d/time.Second), 1)); err != nil {
			logf("server profile %s: %v", path, err)
		}
	}()
	return func() { <-done }
}

func fetchProfile(ctx context.Context, admin, path string, seconds int) error {
	if admin == "" {
		return errors.New("Warden has no admin address")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// profileName is a profile's file name: the row and the load with anything but letters and
// digits as '-', and the round.
func profileName(row, load string, round int) string {
	clean := func(s string) string {
		return strings.Trim(strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
				return r
			}
			return '-'
		}, s), "-")
	}
	return fmt.Sprintf("%s.%s.r%d.pprof", clean(row), clean(load), round)
}
