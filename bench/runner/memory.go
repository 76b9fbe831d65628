package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	rlcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// The Memory section (issue 19): what a live key costs. After the rounds, for each process
// that serves RLS (Warden on the memory store, Warden on Redis, envoyproxy/ratelimit), a
// fresh copy of it (and a fresh Redis) is started, and -memory-keys distinct keys are
// decided through RLS in the "benchmem" domain, whose limit of 10 an hour keeps every key
// alive while it is counted (a GCRA key lives until its bucket is full again: with a limit
// of 100,000 a second that is microseconds). On Warden with Redis, its decision counters
// must show every decision taken by the store, as for a Redis row. Redis bytes per key are used_memory's growth over the counters
// Redis gained (redisCounters: a key, or a field of one of Warden's hashes); the
// server's are its VmRSS growth over the keys decided (a Go heap's RSS includes garbage not
// yet collected, so this is an upper bound).

// memoryResult is one process's fill.
type memoryResult struct {
	label       string // the setup: its server and first row
	redis       bool
	keys        int    // distinct keys decided
	idleRSS     uint64 // the fresh server's VmRSS before the fill
	rssAfter    uint64 // its VmRSS after the fill
	peakRSS     uint64 // its VmHWM after the fill
	usedMemory  [2]uint64
	counters    [2]uint64 // redisCounters
	errorsCount uint64
	invalid     string // why the fill is not a figure; "" when it is
}

// redisBytesPerKey is used_memory's growth over the counters Redis gained.
func (m memoryResult) redisBytesPerKey() float64 {
	if m.counters[1] <= m.counters[0] || m.usedMemory[1] < m.usedMemory[0] {
		return 0
	}
	return float64(m.usedMemory[1]-m.usedMemory[0]) / float64(m.counters[1]-m.counters[0])
}

// rssBytesPerKey is the server's RSS growth over the keys decided.
func (m memoryResult) rssBytesPerKey() float64 {
	if m.keys == 0 || m.rssAfter < m.idleRSS {
		return 0
	}
	return float64(m.rssAfter-m.idleRSS) / float64(m.keys)
}

func memRequest(i int) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "benchmem", Descriptors: []*rlcommon.RateLimitDescriptor{
		{Entries: []*rlcommon.RateLimitDescriptor_Entry{{Key: "user", Value: "mem-" + strconv.Itoa(i)}}},
	}}
}

// servesMemory reports whether st is a process whose keys the Memory section counts: Warden
// with the bench config (which has the benchmem domain) or the peer, serving an RLS row.
func servesMemory(st *setup, rows []*row) bool {
	if st.server != "" && st.server != serverPeer {
		return false
	}
	if st.server == "" && !strings.Contains(st.config, "domain: benchmem") {
		return false
	}
	for _, r := range rows {
		if r.st == st && strings.HasSuffix(r.sc.Method, "/ShouldRateLimit") {
			return true
		}
	}
	return false
}

// measureMemory fills a fresh copy of each RLS process with o.memoryKeys keys.
func measureMemory(ctx context.Context, o *options, rows []*row, setups []*setup, bins binaries, dir, cpu string, logf func(string, ...any)) ([]memoryResult, error) {
	var (
		out  []memoryResult
		errs []error
	)
	for _, st := range setups {
		if !servesMemory(st, rows) {
			continue
		}
		label := st.label
		if st.server == serverPeer {
			label = "envoyproxy/ratelimit"
		}
		logf("memory: %d keys on a fresh %s", o.memoryKeys, cmpLabel(label))
		m, err := fill(ctx, st, bins, dir, cpu, o.memoryKeys, o.perScript)
		m.label = cmpLabel(label)
		if err != nil {
			m.invalid = err.Error()
			errs = append(errs, fmt.Errorf("memory fill of %s: %w", m.label, err))
		}
		out = append(out, m)
	}
	return out, errors.Join(errs...)
}

func cmpLabel(l string) string {
	if l == "" {
		return "Warden (memory store)"
	}
	return l
}

func fill(ctx context.Context, like *setup, bins binaries, dir, cpu string, n, perScript int) (memoryResult, error) {
	st := &setup{label: like.label, config: like.config, redis: like.redis, server: like.server, files: like.files}
	m := memoryResult{keys: n, redis: st.redis}
	if err := st.start(bins, dir, cpu); err != nil {
		return m, err
	}
	defer st.stop()
	m.idleRSS = st.idleRSS
	var before counters
	if st.redis {
		var err error
		if m.usedMemory[0], m.counters[0], err = redisMemory(st.redisAddr); err != nil {
			return m, err
		}
		if st.server == "" {
			if before, err = st.readCounters(ctx); err != nil {
				return m, err
			}
		}
	}
	// Four connections, as the loads use (Wardens before 100,000/s became server.stream_rate's
	// default refused streams of one connection faster than 20,000/s, and a memory store
	// decides faster than that).
	const conns, workers = 4, 32
	var ccs [conns]*grpc.ClientConn
	for i := range ccs {
		cc, err := grpc.NewClient(st.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return m, err
		}
		defer cc.Close()
		ccs[i] = cc
	}
	var (
		next    atomic.Int64
		errs    atomic.Uint64
		wg      sync.WaitGroup
		mu      sync.Mutex
		lastErr error
	)
	for w := range workers {
		cc := ccs[w%conns]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := rlsDecide(cctx, cc, proto.Message(memRequest(i)))
				cancel()
				if err != nil {
					errs.Add(1)
					mu.Lock()
					lastErr = err
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	m.errorsCount = errs.Load()
	if m.errorsCount > 0 {
		return m, fmt.Errorf("%d of %d decisions failed, e.g. %v", m.errorsCount, n, lastErr)
	}
	m.rssAfter, m.peakRSS = st.rss(), st.peakRSS()
	if st.redis {
		var err error
		if m.usedMemory[1], m.counters[1], err = redisMemory(st.redisAddr); err != nil {
			return m, err
		}
		if st.server == "" {
			after, err := st.readCounters(ctx)
			if err != nil {
				return m, err
			}
			if v := check(before, after, perScript); v.invalid != "" {
				return m, errors.New(v.invalid)
			}
		}
		if m.counters[1]-m.counters[0] < uint64(n) {
			return m, fmt.Errorf("Redis gained %d counters for %d distinct keys decided: not every decision was stored", m.counters[1]-m.counters[0], n)
		}
	}
	return m, nil
}

// redisCounters counts the counters a Redis holds: one per key, but one per field of a hash,
// less the two fields of Warden's own in each of its hashes ('e' and 'n', see the README's
// "Redis storage").
const redisCounters = `EVAL "local n = 0 for _, k in ipairs(redis.call('KEYS', '*')) do ` +
	`if redis.call('TYPE', k).ok == 'hash' then for _, f in ipairs(redis.call('HKEYS', k)) do ` +
	`if f ~= 'e' and f ~= 'n' then n = n + 1 end end else n = n + 1 end end return n" 0`

// redisMemory reads used_memory (INFO memory) and the counters held (redisCounters).
func redisMemory(addr string) (used, counters uint64, err error) {
	info, err := redisCommand(addr, "INFO memory")
	if err != nil {
		return 0, 0, err
	}
	if used, err = infoField(info, "used_memory"); err != nil {
		return 0, 0, err
	}
	n, err := redisCommand(addr, redisCounters)
	if err != nil {
		return 0, 0, err
	}
	counters, err = strconv.ParseUint(n, 10, 64)
	return used, counters, err
}

// infoField returns the integer field name of an INFO reply.
func infoField(info, name string) (uint64, error) {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO: no %s", name)
}
