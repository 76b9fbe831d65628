package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	ghzload "github.com/bojand/ghz/load"
	"github.com/bojand/ghz/runner"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// load is one kind of measured run: closed loop (rps 0) or open loop at rps calls/s.
type load struct {
	name string
	rps  uint
}

// loadSettings are the flags that shape every ghz run.
type loadSettings struct {
	duration    time.Duration
	concurrency uint
	connections uint
	// generatedCodec: ghz encodes and decodes with the generated Go types (generatedCodec)
	// instead of its dynamic messages.
	generatedCodec bool
}

// row is one line of a table: a scenario measured on one setup, compared with floor (the
// row of the floor on the same setup; itself for a floor).
type row struct {
	label    string
	sc       Scenario
	st       *setup
	floor    *row
	dataFile string

	// results[load][round], and the decisions sampled around them.
	results   map[string][]result
	decisions map[string]int
}

// result is one measured run.
type result struct {
	ok, errors uint64
	rps        float64
	p50, p99   time.Duration
	usage
	clientSeconds float64 // the load generator's own CPU (this process) during the run
	disturbed     bool
	errText       string // the most frequent error, for the report
	peakRSS       uint64 // the server's VmHWM after the run (its peak since it started), bytes
	// redis is the validity check of a Redis row (see validity.go); zero for other rows.
	redis validity
}

// cpuPerCall is Warden's (and Redis's) CPU-µs per call answered OK.
func (r result) cpuPerCall() float64 {
	if r.ok == 0 {
		return 0
	}
	return r.cpuSeconds * 1e6 / float64(r.ok)
}

// redisCPUPerCall is Redis's share of cpuPerCall.
func (r result) redisCPUPerCall() float64 {
	if r.ok == 0 {
		return 0
	}
	return r.redisSeconds * 1e6 / float64(r.ok)
}

// clientCPUPerCall is the load generator's CPU-µs per call answered OK: when it nears the
// run's wall time per call (one core), closed-loop RPS measures the load generator.
func (r result) clientCPUPerCall() float64 {
	if r.ok == 0 {
		return 0
	}
	return r.clientSeconds * 1e6 / float64(r.ok)
}

// writeData writes the row's requests as a JSON array for ghz's round robin.
func writeData(dir string, r *row, n int) error {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		j, err := protojson.Marshal(r.sc.Request(i))
		if err != nil {
			return fmt.Errorf("%s: request %d: %w", r.sc.Name, i, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(j)
	}
	b.WriteByte(']')
	f, err := os.CreateTemp(dir, "data-*.json")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		return err
	}
	r.dataFile = f.Name()
	return f.Close()
}

// ghzRun runs one load of the row's scenario and measures Warden's CPU around it.
func ghzRun(root string, r *row, ls loadSettings, l load, duration time.Duration, serverCPU string) (result, error) {
	opts := []runner.Option{
		runner.WithInsecure(true),
		runner.WithConcurrency(ls.concurrency),
		runner.WithConnections(ls.connections),
		runner.WithRunDuration(duration),
		runner.WithDurationStopAction("wait"), // in-flight calls finish and count, not errors
		runner.WithTimeout(10 * time.Second),
		runner.WithDataFromFile(r.dataFile),
		runner.WithDisableTemplateFuncs(true),
		runner.WithDisableTemplateData(true),
	}
	if l.rps > 0 {
		opts = append(opts, runner.WithRPS(l.rps))
	}
	if ls.generatedCodec {
		// A codec per run: it caches a generated twin per request message of this run's ghz.
		opts = append(opts, runner.WithDefaultCallOptions([]grpc.CallOption{grpc.ForceCodecV2(newGeneratedCodec())}))
	}
	switch {
	case r.sc.Proto != "":
		opts = append(opts, runner.WithProtoFile(filepath.Join(root, r.sc.Proto), []string{filepath.Join(root, "proto")}))
	case r.st.server == serverPeer: // no reflection service: the descriptors linked into this binary
		set, err := protoset(r.sc.Method)
		if err != nil {
			return result{}, fmt.Errorf("%s: %w", r.label, err)
		}
		opts = append(opts, runner.WithProtosetBinary(set))
	}
	pids := r.st.pids()
	before, err := takeSample(pids)
	if err != nil {
		return result{}, err
	}
	clientBefore, err := processTicks(os.Getpid())
	if err != nil {
		return result{}, err
	}
	rep, err := ghzRunOnce(r.sc.Method, r.st.grpcAddr, duration, ls.concurrency, opts...)
	if err != nil {
		return result{}, fmt.Errorf("%s: ghz: %w", r.label, err)
	}
	clientAfter, err := processTicks(os.Getpid())
	if err != nil {
		return result{}, err
	}
	after, err := takeSample(pids)
	if err != nil {
		return result{}, err
	}
	res := result{usage: diff(before, after, "cpu"+serverCPU), rps: rep.Rps, peakRSS: r.st.peakRSS(),
		clientSeconds: float64(clientAfter-clientBefore) / clockTicks}
	for code, n := range rep.StatusCodeDist {
		if code == "OK" {
			res.ok += uint64(n)
		} else {
			res.errors += uint64(n)
		}
	}
	res.errText = mostFrequent(rep.ErrorDist)
	for _, d := range rep.LatencyDistribution {
		switch d.Percentage {
		case 50:
			res.p50 = d.Latency
		case 99:
			res.p99 = d.Latency
		}
	}
	return res, nil
}

// ghzRunOnce is runner.Run without its leak. runner.Run starts a goroutine per call that waits
// for SIGINT forever and holds the Requester, whose Reporter preallocates 1M result details
// (64 MB, all of it scanned by the GC): a full bench leaked ~16 GiB and the load generator's GC
// grew with every run, slowing the later rows. Here the Requester is run directly with
// workers workers (constTicker) and stopped d after they started (not d after the call:
// opening the connections can take most of a short run on a busy machine), and nothing
// outlives the call.
func ghzRunOnce(call, host string, d time.Duration, workers uint, opts ...runner.Option) (*runner.Report, error) {
	tk := newConstTicker(workers)
	cfg, err := runner.NewConfig(call, host, append(opts, runner.WithWorkerTicker(tk))...)
	if err != nil {
		return nil, err
	}
	reqr, err := runner.NewRequester(cfg)
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-tk.sent:
		case <-done:
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			reqr.Stop(runner.ReasonTimeout)
		case <-done:
		}
	}()
	rep, err := reqr.Run()
	close(done)
	<-stopped
	return rep, err
}

func mostFrequent(m map[string]int) string {
	best, n := "", 0
	for k, v := range m {
		if v > n || (v == n && k < best) {
			best, n = k, v
		}
	}
	return best
}

// sampleDecisions makes n of the row's requests with a real client and counts the
// decisions. It runs outside the CPU window.
func sampleDecisions(ctx context.Context, cc *grpc.ClientConn, r *row, n, total int) error {
	if r.sc.Decide == nil {
		return nil
	}
	for k := range n {
		i := k * total / n // spread over the data file
		req := r.sc.Request(i)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := r.sc.Decide(cctx, cc, req)
		cancel()
		if err != nil {
			reqJSON, _ := json.Marshal(req)
			return fmt.Errorf("%s: decision check on request %d %s: %w", r.label, i, reqJSON, err)
		}
		r.decisions[d]++
	}
	return nil
}

func decisionSummary(m map[string]int) string {
	if len(m) == 0 {
		return "not checked (no Decide)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// protoset is a serialized FileDescriptorSet of the file that declares method's service
// ("pkg.Service/Method") and every file it imports, taken from the generated Go types
// linked into this binary: ghz's descriptors for a server without the reflection service.
func protoset(method string) ([]byte, error) {
	svc, _, _ := strings.Cut(method, "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil, fmt.Errorf("descriptors of %s: %w", svc, err)
	}
	var (
		set  descriptorpb.FileDescriptorSet
		seen = map[string]bool{}
		add  func(f protoreflect.FileDescriptor)
	)
	add = func(f protoreflect.FileDescriptor) { // dependencies first
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(d.ParentFile())
	return proto.Marshal(&set)
}

// constTicker starts n workers once, as ghz's ghzload.ConstWorkerTicker, without its race: ghz
// calls Finish (which closes the channel) when a run stops, and when the stop came before
// the ticker's one send was received (a short load on a busy machine: the timer fired
// before ghz had started its workers), that send panicked "send on closed channel" and
// killed the runner. Here Run gives up its send once Finish is called, and Finish closes
// the channel only after Run has returned. One per run; sent tells when the workers start.
type constTicker struct {
	n    int
	c    chan ghzload.TickValue
	sent chan struct{} // closed once the tick was received: ghz starts its workers
	stop chan struct{} // closed by Finish
	ran  chan struct{} // closed when Run returns
}

func newConstTicker(n uint) *constTicker {
	return &constTicker{n: int(n), c: make(chan ghzload.TickValue), sent: make(chan struct{}),
		stop: make(chan struct{}), ran: make(chan struct{})}
}

func (t *constTicker) Ticker() <-chan ghzload.TickValue { return t.c }

func (t *constTicker) Run() {
	defer close(t.ran)
	select {
	case t.c <- ghzload.TickValue{Delta: t.n, Done: true}:
		close(t.sent)
	case <-t.stop:
	}
}

func (t *constTicker) Finish() {
	close(t.stop)
	<-t.ran
	close(t.c)
}
