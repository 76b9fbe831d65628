package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestDebounce walks watchDir's debounce on a fake clock (a synctest bubble, with channels
// standing in for fsnotify's): a burst of events is one change, reported debounceWait after
// the last event; errors are reported at once; a closed channel or the end of ctx ends it.
func TestDebounce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		events, errs := make(chan struct{}), make(chan error)
		start := time.Now()
		var mu sync.Mutex // the race detector does not count synctest.Wait as synchronization
		var changesAt []time.Duration
		var errsSeen []error
		changes := func() []time.Duration {
			mu.Lock()
			defer mu.Unlock()
			return append([]time.Duration(nil), changesAt...)
		}
		watchErrs := func() []error { mu.Lock(); defer mu.Unlock(); return append([]error(nil), errsSeen...) }
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			debounce(ctx, events, errs, debounceWait,
				func(err error) { mu.Lock(); errsSeen = append(errsSeen, err); mu.Unlock() },
				func(context.Context) { mu.Lock(); changesAt = append(changesAt, time.Since(start)); mu.Unlock() })
		}()
		at := func(d time.Duration) { time.Sleep(time.Until(start.Add(d))) }
		// A burst at 0, 50ms and 90ms: one change at 190ms.
		events <- struct{}{}
		at(50 * time.Millisecond)
		events <- struct{}{}
		at(90 * time.Millisecond)
		events <- struct{}{}
		at(189 * time.Millisecond)
		synctest.Wait()
		if got := changes(); len(got) != 0 {
			t.Fatalf("changes %v before the burst was quiet for %v, want none", got, debounceWait)
		}
		at(time.Second)
		synctest.Wait()
		if got, want := changes(), 190*time.Millisecond; len(got) != 1 || got[0] != want {
			t.Fatalf("after a burst: changes at %v, want one at %v", got, want)
		}
		// An error is reported at once and does not count as a change.
		errs <- errors.New("overflow")
		synctest.Wait()
		if e, c := watchErrs(), changes(); len(e) != 1 || len(c) != 1 {
			t.Fatalf("after a watch error: errors %v, changes %v; want one error, no new change", e, c)
		}
		// Two events further apart than debounceWait are two changes.
		events <- struct{}{}
		at(time.Second + 150*time.Millisecond)
		events <- struct{}{}
		at(2 * time.Second)
		synctest.Wait()
		want := []time.Duration{190 * time.Millisecond, 1100 * time.Millisecond, 1250 * time.Millisecond}
		if got := changes(); len(got) != 3 || got[1] != want[1] || got[2] != want[2] {
			t.Fatalf("two separate events: changes at %v, want %v", got, want)
		}
		cancel()
		<-done

		// A closed events channel ends it too (fsnotify's watcher was closed).
		closed := make(chan struct{})
		close(closed)
		debounce(t.Context(), closed, errs, debounceWait, func(error) {}, func(context.Context) {})
	})
}

// TestServeGRPCBoundedStop: a server whose stream never ends stops anyway, shutdown_timeout
// after the drain (GracefulStop, then Stop), and its run function returns nil; a server that
// cannot serve makes its run function fail with the server's name.
func TestServeGRPCBoundedStop(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	stopping := make(chan struct{})
	log := slog.New(slog.DiscardHandler)
	ran := make(chan error, 1)
	go func() {
		ran <- serveGRPC("test grpc", s, lis, stopping, time.Millisecond, 100*time.Millisecond, log)(context.Background())
	}()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// Watch never ends by itself: GracefulStop alone would wait for it forever.
	w, err := healthpb.NewHealthClient(cc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	close(stopping)
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("run function: %v, want nil after a stop", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serveGRPC did not stop a server with an endless stream")
	}

	lis.Close() // Serve on a closed listener fails
	err = serveGRPC("second grpc", grpc.NewServer(), lis, make(chan struct{}), 0, 0, log)(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "second grpc: ") {
		t.Fatalf("Serve on a closed listener: run function returned %v, want an error naming the server", err)
	}
}
