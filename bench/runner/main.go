// Command bench measures Warden's cost per decision with ghz and prints a markdown table.
//
// It builds cmd/warden, starts it (and a throwaway redis-server when a scenario needs one)
// pinned to CPU 0, runs itself, the load generator, on CPU 1, and for every scenario in
// the registry (scenario.go) runs a closed-loop and open-loop loads in interleaved rounds.
// The figure that decides is CPU-µs per call that Warden and its Redis spent, read from
// /proc; RPS and latency are reported beside it, all as ratios to an empty-handler floor
// measured on the same process in the same round. See README.md.
//
//	cd bench && go run .                                   # full: 3 rounds of 15 s loads
//	cd bench && go run . -duration 2s -warmup 1s -rounds 1 -open-loop=false   # smoke
//
// It knows Warden only through its command line, its config file and its gRPC API.
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// pinEnv marks the re-executed, pinned load generator.
const pinEnv = "WARDEN_BENCH_PINNED"

// requests is how many distinct requests each data file holds.
const requests = 1000

type options struct {
	repo, rev, wardenBin   string
	peerBin                string // envoyproxy/ratelimit's service_cmd binary, "" to leave it out
	memoryKeys             int
	out                    string
	cpuProfile             string
	serverProfile          string // directory for Warden's CPU profiles, "" for none
	match                  *regexp.Regexp
	warmup                 time.Duration
	rounds, reruns, checks int
	perScript              int
	openLoop, pin          bool
	maxSteal, maxOther     float64
	loadSettings
}

func main() {
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		os.Exit(2)
	}
	serverCPU, note := pinning(o.pin)
	code := 0
	if err := run(context.Background(), o, serverCPU, note, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	os.Exit(code)
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	o := &options{}
	var match string
	fs.StringVar(&o.repo, "repo", "", "Warden's repository root (default: found from the working directory)")
	fs.StringVar(&o.rev, "rev", "", "build cmd/warden from this commit (git archive) instead of the working tree")
	fs.StringVar(&o.wardenBin, "warden-bin", "", "use this warden binary instead of building cmd/warden")
	fs.StringVar(&o.peerBin, "peer-ratelimit", "", "also measure envoyproxy/ratelimit beside Warden's RLS on Redis: the path of its binary (go build ./src/service_cmd in its repository)")
	fs.IntVar(&o.memoryKeys, "memory-keys", 100000, "Memory section: decide this many distinct keys on a fresh process of each RLS setup (and its fresh Redis) after the rounds; 0 skips it")
	fs.StringVar(&o.out, "out", "", "also write the table to DIR/<date>-<gitsha>.md (e.g. results)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile to FILE; each measured load is labelled row=<row> load=<load> (go tool pprof -tagfocus)")
	fs.StringVar(&o.serverProfile, "server-profile", "", "take a CPU profile of Warden (its admin port's /debug/pprof, turned on in its config) during every measured load of a Warden row and write it to DIR/<row>.<load>.r<round>.pprof; the profiler costs Warden about 1% CPU")
	fs.StringVar(&match, "scenarios", "", "run only the scenarios whose name matches this regexp (their floors always run)")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "discarded warm-up per process and method")
	fs.DurationVar(&o.duration, "duration", 15*time.Second, "length of each measured load")
	fs.UintVar(&o.concurrency, "concurrency", 50, "ghz concurrency (workers)")
	fs.UintVar(&o.connections, "connections", 4, "ghz connections")
	fs.BoolVar(&o.generatedCodec, "generated-codec", true, "ghz encodes requests and decodes responses with the generated Go types, as a Go client does; false: ghz's dynamic messages, whose decoding alone can bound RPS")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds (A, B, A, B, …); the table shows medians")
	fs.BoolVar(&o.openLoop, "open-loop", true, "also run open-loop loads at 500 and 2000 calls/s")
	fs.BoolVar(&o.pin, "pin", true, "pin Warden and Redis to CPU 0 and the load generator to CPU 1 (needs taskset)")
	fs.Float64Var(&o.maxSteal, "max-steal", 2, "a run with more hypervisor steal (% of all CPU time) is disturbed")
	fs.Float64Var(&o.maxOther, "max-other", 10, "a run where CPU 0 is busier than this (%) with anything but Warden and Redis is disturbed")
	fs.IntVar(&o.reruns, "reruns", 1, "re-run a disturbed round up to this many times")
	fs.IntVar(&o.checks, "checks", 10, "decision samples with a real client before and after every measured load")
	fs.IntVar(&o.perScript, "decisions-per-script", 64, "a Redis row is INVALID if Redis ran fewer than one script call per this many store decisions (the Redis store carries up to 64 Takes in one EVALSHA; 1: one EVALSHA per decision, as Wardens before that did)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.match, err = regexp.Compile(match); err != nil {
		fmt.Fprintln(fs.Output(), "-scenarios:", err)
		return nil, err
	}
	if o.peerBin != "" {
		if o.peerBin, err = filepath.Abs(o.peerBin); err != nil {
			return nil, err
		}
		if _, err := os.Stat(o.peerBin); err != nil {
			fmt.Fprintln(fs.Output(), "-peer-ratelimit:", err)
			return nil, err
		}
	}
	if o.rounds < 1 || o.concurrency < 1 || o.connections < 1 || o.duration <= 0 || o.perScript < 1 || o.memoryKeys < 0 {
		fmt.Fprintln(fs.Output(), "-rounds, -concurrency, -connections, -duration and -decisions-per-script must be positive")
		return nil, errors.New("bad flags")
	}
	return o, nil
}

// pinning re-executes this program under `taskset -c 1` the first time through, so that
// every thread of the load generator runs on CPU 1 (sched_setaffinity from Go would pin only
// the calling thread). It returns the CPU for Warden and Redis ("" when unpinned) and a note
// for the report.
func pinning(want bool) (serverCPU, note string) {
	if !want {
		return "", "unpinned (-pin=false)"
	}
	if os.Getenv(pinEnv) != "" { // the re-executed child: its own mask is CPU 1 only
		return "0", "Warden and Redis on CPU 0, ghz on CPU 1 (taskset)"
	}
	if runtime.NumCPU() < 2 {
		return "", fmt.Sprintf("unpinned: %d CPU", runtime.NumCPU())
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		return "", "unpinned: taskset not found"
	}
	exe, err := os.Executable()
	if err == nil {
		argv := append([]string{"taskset", "-c", "1", exe}, os.Args[1:]...)
		err = syscall.Exec(taskset, argv, append(os.Environ(), pinEnv+"=1"))
	}
	return "", fmt.Sprintf("unpinned: re-exec under taskset failed: %v", err)
}

func run(ctx context.Context, o *options, serverCPU, pinNote string, stdout, stderr io.Writer) error {
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	root, err := repoRoot(o.repo)
	if err != nil {
		return err
	}
	o.repo = root
	dir, err := os.MkdirTemp("", "warden-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	rows, setups, err := plan(o.match, o.peerBin != "")
	if err != nil {
		return err
	}
	if o.serverProfile != "" {
		if err := os.MkdirAll(o.serverProfile, 0o755); err != nil {
			return err
		}
		for _, st := range setups {
			st.pprof = st.server == ""
		}
	}
	for _, r := range rows {
		if err := writeData(dir, r, requests); err != nil {
			return err
		}
	}

	logf("building cmd/warden and bench/floor from %s …", cmp.Or(o.rev, "the working tree"))
	bins := binaries{peer: o.peerBin}
	if bins.warden, bins.floor, err = buildWarden(ctx, root, o.rev, dir); err != nil {
		return err
	}
	if o.wardenBin != "" {
		bins.warden = o.wardenBin
	}
	var failures []error
	defer func() {
		for _, st := range setups {
			if (st.warden != nil || st.redisProc != nil) && !st.stopped {
				if err := st.stop(); err != nil {
					logf("%v", err)
				}
			}
		}
	}()
	conns := map[*setup]*grpc.ClientConn{}
	for _, st := range setups {
		if err := st.start(bins, dir, serverCPU); err != nil {
			return err
		}
		logf("%s %s listening on %s (pids %v)", cmp.Or(st.server, "warden"), st.label, st.grpcAddr, st.pids())
		cc, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer cc.Close()
		conns[st] = cc
	}

	loads := []load{{name: "closed loop"}}
	if o.openLoop {
		loads = append(loads, load{name: "open loop 500/s", rps: 500}, load{name: "open loop 2000/s", rps: 2000})
	}

	// Warm-up: once per process and method, discarded.
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.warmup > 0 {
		warmed := map[string]bool{}
		for _, r := range rows {
			k := fmt.Sprintf("%p %s", r.st, r.sc.Method)
			if warmed[k] {
				continue
			}
			warmed[k] = true
			logf("warm-up %s for %v", r.label, o.warmup)
			res, err := ghzRun(root, r, o.loadSettings, loads[0], o.warmup, serverCPU)
			if err != nil {
				return err
			}
			if res.errors > 0 {
				return fmt.Errorf("warm-up %s: %d errors, e.g. %s", r.label, res.errors, res.errText)
			}
		}
	}

	for round := 1; round <= o.rounds; round++ {
		for _, st := range setups {
			for _, l := range loads {
				var got []result
				for attempt := 0; ; attempt++ {
					got = got[:0]
					disturbed := false
					for _, r := range rows {
						if r.st != st {
							continue
						}
						if err := sampleDecisions(ctx, conns[st], r, o.checks, requests); err != nil {
							failures = append(failures, err)
						}
						var res result
						measure := func() (err error) {
							if st.pprof {
								stop := st.profile(ctx, filepath.Join(o.serverProfile, profileName(r.label, l.name, round)), o.duration, logf)
								defer stop()
							}
							pprof.Do(ctx, pprof.Labels("row", r.label, "load", l.name), func(context.Context) {
								res, err = ghzRun(root, r, o.loadSettings, l, o.duration, serverCPU)
							})
							return err
						}
						var v validity
						switch {
						case r.sc.Redis && r.sc.Leased:
							v, err = checkLeasedLoad(ctx, st, conns[st], o.perScript, measure)
						case r.sc.Redis && len(r.sc.Counted) > 0:
							v, err = checkCountedLoad(st, r.sc.Counted, measure, func() uint64 { return res.ok })
						case r.sc.Redis:
							v, err = checkLoad(ctx, st, o.perScript, measure)
						default:
							err = measure()
						}
						if err != nil {
							return err
						}
						res.redis = v
						if err := sampleDecisions(ctx, conns[st], r, o.checks, requests); err != nil {
							failures = append(failures, err)
						}
						res.disturbed = res.stealPct > o.maxSteal || res.otherPct > o.maxOther
						disturbed = disturbed || res.disturbed
						logf("round %d %-16s %-28s %8.0f rps %7.1f CPU-µs/call  p99 %-9v errors %d  steal %.1f%%  CPU0 other %.1f%%%s",
							round, l.name, r.label, res.rps, res.cpuPerCall(), res.p99.Round(time.Microsecond),
							res.errors, res.stealPct, res.otherPct, map[bool]string{true: "  DISTURBED"}[res.disturbed])
						if v.hasHolds && v.roundTrips > 0 {
							logf("round %d %-16s %-28s %.0f round trips, %.2f Takes each, %.1f%% held", round, l.name, r.label,
								v.roundTrips, v.sentTakes/v.roundTrips, 100*v.holds/v.roundTrips)
						}
						if v.invalid != "" {
							logf("round %d %-16s %-28s INVALID: %s", round, l.name, r.label, v.invalid)
							failures = append(failures, fmt.Errorf("%s, %s, round %d: INVALID: %s", r.label, l.name, round, v.invalid))
						}
						if res.errors > 0 {
							failures = append(failures, fmt.Errorf("%s, %s, round %d: %d gRPC errors, e.g. %s", r.label, l.name, round, res.errors, res.errText))
						}
						got = append(got, res)
					}
					if !disturbed || attempt >= o.reruns {
						break
					}
					logf("round %d %s disturbed: re-running it", round, l.name)
				}
				i := 0
				for _, r := range rows {
					if r.st == st {
						r.results[l.name] = append(r.results[l.name], got[i])
						i++
					}
				}
			}
		}
	}

	for _, st := range setups {
		st.peak, st.endSplit = st.peakRSS(), st.split()
		if err := st.stop(); err != nil {
			failures = append(failures, err)
		}
	}
	var mem []memoryResult
	if o.memoryKeys > 0 {
		if mem, err = measureMemory(ctx, o, rows, setups, bins, dir, serverCPU, logf); err != nil {
			failures = append(failures, err)
		}
	}

	md := report(o, pinNote, loads, rows, setups, mem)
	fmt.Fprint(stdout, md)
	if o.out != "" {
		path, err := writeReport(o, md)
		if err != nil {
			return err
		}
		logf("wrote %s", path)
	}
	return errors.Join(failures...)
}

// plan turns the registry into rows and the Warden processes they need. Every row is
// preceded by its floor measured on the same process.
//
// A scenario runs when match selects its name or the row it is measured Beside; a row of
// envoyproxy/ratelimit runs only with peer (-peer-ratelimit given).
func plan(match *regexp.Regexp, peer bool) ([]*row, []*setup, error) {
	byName := map[string]Scenario{}
	for _, s := range scenarios {
		if _, dup := byName[s.Name]; dup {
			return nil, nil, fmt.Errorf("two scenarios named %q", s.Name)
		}
		if s.Request == nil || s.Method == "" {
			return nil, nil, fmt.Errorf("scenario %q: Method and Request are required", s.Name)
		}
		byName[s.Name] = s
	}
	var (
		rows    []*row
		setups  []*setup
		byKey   = map[string]*setup{}
		haveRow = map[string]*row{}
	)
	setupFor := func(s Scenario) *setup {
		k := setupKey(s)
		if st := byKey[k]; st != nil {
			return st
		}
		st := &setup{config: s.Config, redis: s.Redis, server: s.Server, files: s.Files}
		if s.Server == "" && (s.Config != "" || s.Redis) || s.Redis {
			st.label = s.Name
		}
		byKey[k] = st
		setups = append(setups, st)
		return st
	}
	addRow := func(s Scenario, st *setup, floor *row) *row {
		label := s.Name
		if floor == nil && st.label != "" && st.label != s.Name { // a floor on another row's process
			label += " @ " + st.label
		}
		if r := haveRow[label]; r != nil {
			return r
		}
		r := &row{label: label, sc: s, st: st, floor: floor, results: map[string][]result{}, decisions: map[string]int{}}
		if floor == nil {
			r.floor = r
		}
		haveRow[label] = r
		rows = append(rows, r)
		return r
	}
	for _, s := range scenarios {
		if !match.MatchString(s.Name) && (s.Beside == "" || !match.MatchString(s.Beside)) {
			continue
		}
		if s.Server == serverPeer && !peer {
			continue
		}
		st := setupFor(s)
		if s.Floor == "" {
			addRow(s, st, nil)
			continue
		}
		f, ok := byName[s.Floor]
		if !ok {
			return nil, nil, fmt.Errorf("scenario %q: no floor named %q", s.Name, s.Floor)
		}
		if f.Floor != "" {
			return nil, nil, fmt.Errorf("scenario %q: its floor %q is not a floor", s.Name, s.Floor)
		}
		fst := st
		if f.Server != s.Server { // a floor of its own server (bench/floor): one row for all
			fst = setupFor(f)
		}
		addRow(s, st, addRow(f, fst, nil))
	}
	if len(rows) == 0 {
		return nil, nil, errors.New("-scenarios matches no scenario")
	}
	return rows, setups, nil
}

// repoRoot finds the directory of Warden's go.mod: dir if given, else the working
// directory or one of its parents.
func repoRoot(dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isWardenRoot(d) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("cannot find Warden's go.mod above the working directory: use -repo")
		}
		d = parent
	}
}

func isWardenRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "github.com/wardenhq/warden"
		}
	}
	return false
}
