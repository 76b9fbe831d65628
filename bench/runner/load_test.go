package main

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	ghzload "github.com/bojand/ghz/load"
	"github.com/bojand/ghz/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
)

// ghzRunOnce runs for its duration, answers every call, and leaves no goroutine behind
// (runner.Run leaves one per call, holding ~64 MB).
func TestGhzRunOnceLeavesNothing(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	reflection.Register(srv) // ghz finds the method by reflection
	go srv.Serve(lis)
	defer srv.Stop()
	data := filepath.Join(t.TempDir(), "data.json")
	if err := os.WriteFile(data, []byte(`[{"service":""}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func() {
		t.Helper()
		start := time.Now()
		rep, err := ghzRunOnce("grpc.health.v1.Health/Check", lis.Addr().String(), 200*time.Millisecond, 4,
			runner.WithInsecure(true), runner.WithConcurrency(4), runner.WithConnections(1),
			runner.WithRunDuration(200*time.Millisecond), runner.WithDurationStopAction("wait"),
			runner.WithDataFromFile(data), runner.WithDefaultCallOptions([]grpc.CallOption{grpc.ForceCodecV2(newGeneratedCodec())}))
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Fatalf("returned after %v, before its duration", el)
		}
		if rep.Count == 0 || rep.StatusCodeDist["OK"] != int(rep.Count) {
			t.Fatalf("%d calls, codes %v", rep.Count, rep.StatusCodeDist)
		}
	}
	// settled is the goroutine count once the connections of finished runs have closed.
	settled := func() int {
		n := runtime.NumGoroutine()
		for stable := 0; stable < 10; stable++ {
			time.Sleep(20 * time.Millisecond)
			if m := runtime.NumGoroutine(); m != n {
				n, stable = m, 0
			}
		}
		return n
	}
	run() // the first run starts what stays for the process (gRPC's resolvers, signal handling)
	base := settled()
	for range 3 {
		run()
	}
	settled()
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after 3 more runs, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// TestConstTickerStoppedBeforeItsTick is ghz's sequence when a run is stopped before its
// workers started: Run is blocked sending the one tick nobody receives yet, and Finish
// closes the channel. With ghz's ghzload.ConstWorkerTicker that send panics ("send on closed
// channel") and kills the test binary.
func TestConstTickerStoppedBeforeItsTick(t *testing.T) {
	var tk ghzload.WorkerTicker = newConstTicker(50)
	started := make(chan struct{})
	go func() {
		close(started)
		tk.Run()
	}()
	<-started
	time.Sleep(10 * time.Millisecond) // Run is now blocked in its send
	tk.Finish()
	for tv := range tk.Ticker() {
		t.Errorf("got a tick %+v after Finish", tv)
	}

	// A ticker whose tick is received starts its workers once.
	tk = newConstTicker(50)
	go tk.Run()
	if tv := <-tk.Ticker(); tv.Delta != 50 || !tv.Done {
		t.Errorf("got %+v, want Delta 50, Done", tv)
	}
	tk.Finish()
}
