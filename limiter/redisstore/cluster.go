package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// On a Redis Cluster (a *redis.ClusterClient), the Store does not hand its pipelines to the
// ClusterClient: it keeps its own map of the 16384 slots to their masters and one queue, with
// its own batchers, per master. A Take goes to the queue of the master that owns its tag's
// slot, so a dead or slow master delays and fails only the Takes it owns; a pipeline holds the
// commands of one master only, sent on that master's connection with no retry, so one
// command's failure is never written over another's answer and no command is sent twice.
//
// The map is refreshed from CLUSTER SLOTS by a goroutine: at once after a MOVED, a
// CLUSTERDOWN-like reply or a connection error, and every pollEvery for as long as a master
// of the map keeps failing, so that a promoted replica is found within pollEvery of its
// promotion even while the Limiter's breaker keeps calls away from the dead master.

const (
	numSlots = 16384
	// pollEvery is how often the slot map is refreshed while a master of the map is failing.
	pollEvery = 100 * time.Millisecond
	// refreshGap is the least time between two refreshes (a burst of errors kicks one).
	refreshGap = 50 * time.Millisecond
	// refreshTimeout bounds one refresh.
	refreshTimeout = time.Second
)

// node is one master of the cluster, named by its address.
type node struct {
	id      int // > 0, stable for the address: the Limiter's breaker index (Store.Shard)
	addr    string
	client  atomic.Pointer[redis.Client]
	reqs    chan *call
	gate    *gate       // of reqs
	failing atomic.Bool // the last pipeline failed for want of the node (not a script error)
}

// topology maps every slot to its master (nil when no master is known for it).
type topology struct {
	slots [numSlots]*node
}

// clusterState is the Store's state on a Cluster.
type clusterState struct {
	cc      *redis.ClusterClient
	topo    atomic.Pointer[topology]
	mu      sync.Mutex               // guards nodes and clients
	nodes   map[string]*node         // by address, every master ever seen (their queues stay open)
	clients map[string]*redis.Client // by address, every node of the last refresh, replicas too
	kick    chan struct{}            // capacity 1: refresh now
	stop    chan struct{}
	stopped sync.WaitGroup
}

func newClusterState(cc *redis.ClusterClient) *clusterState {
	return &clusterState{cc: cc, nodes: map[string]*node{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
}

// Shard implements limiter.Sharded: the id of the master that owns tag's slot now, or 0 when
// the store is not on a Cluster or no master is known for the slot. The Limiter keeps one
// circuit breaker per id.
func (s *Store) Shard(tag string) int {
	if s.cl == nil {
		return 0
	}
	t := s.cl.topo.Load()
	if t == nil {
		return 0
	}
	var slot int
	if !strings.Contains(s.opts.Prefix, "{") {
		slot = tagSlot(tag)
	} else {
		slot = keySlot(s.name(tag, "")) // a rare tag: allocating is fine
	}
	if n := t.slots[slot]; n != nil {
		return n.id
	}
	return 0
}

// nodeFor returns the master that owns slot, loading the slot map first if there is none.
func (s *Store) nodeFor(ctx context.Context, slot int) *node {
	t := s.cl.topo.Load()
	if t == nil {
		s.refresh(ctx)
		if t = s.cl.topo.Load(); t == nil {
			return nil
		}
	}
	n := t.slots[slot]
	if n == nil {
		s.kickRefresh()
	}
	return n
}

// kickRefresh asks the refresher for a refresh now, without waiting for it.
func (s *Store) kickRefresh() {
	select {
	case s.cl.kick <- struct{}{}:
	default:
	}
}

// refresher refreshes the slot map when kicked, and every pollEvery while a master of the
// map is failing, until Close.
func (s *Store) refresher() {
	defer s.cl.stopped.Done()
	var last time.Time
	for {
		var poll <-chan time.Time
		if s.failing() {
			poll = time.After(pollEvery)
		}
		select {
		case <-s.cl.stop:
			return
		case <-s.cl.kick:
		case <-poll:
		}
		if wait := refreshGap - time.Since(last); wait > 0 {
			select {
			case <-s.cl.stop:
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		s.refresh(ctx)
		cancel()
	}
}

// failing reports whether a master of the current map is failing.
func (s *Store) failing() bool {
	t := s.cl.topo.Load()
	if t == nil {
		return true
	}
	var last *node
	// Over the array by pointer: ranging over t.slots copied its 16384 pointers (128 KiB)
	// into the frame, which made the refresher's stack 256 KiB.
	for _, n := range &t.slots {
		if n != nil && n != last {
			if n.failing.Load() {
				return true
			}
			last = n
		}
	}
	return false
}

// refresh reloads the slot map from CLUSTER SLOTS, asking the masters that are not failing
// first, and takes the node clients from the ClusterClient (whose own state it reloads too).
func (s *Store) refresh(ctx context.Context) {
	var mu sync.Mutex
	clients := map[string]*redis.Client{}
	_ = s.cl.cc.ForEachShard(ctx, func(_ context.Context, c *redis.Client) error {
		mu.Lock()
		clients[c.Options().Addr] = c
		mu.Unlock()
		return nil
	})
	var healthy, sick []*redis.Client
	s.cl.mu.Lock()
	s.cl.clients = clients
	for addr, c := range clients {
		if n := s.cl.nodes[addr]; n != nil && n.failing.Load() {
			sick = append(sick, c)
		} else {
			healthy = append(healthy, c)
		}
	}
	s.cl.mu.Unlock()
	rand.Shuffle(len(healthy), func(i, j int) { healthy[i], healthy[j] = healthy[j], healthy[i] })
	var slots []redis.ClusterSlot
	var err error
	from := ""
	for _, c := range append(healthy, sick...) {
		// CLUSTER SLOTS, not CLUSTER SHARDS: the latter needs Redis 7, and Warden supports 6 too.
		//lint:ignore SA1019 CLUSTER SHARDS is Redis 7 only
		if slots, err = c.ClusterSlots(ctx).Result(); err == nil && len(slots) > 0 {
			from = c.Options().Addr
			break
		}
	}
	if err != nil || len(slots) == 0 {
		if ctx.Err() == nil {
			s.log.Warn("redisstore: cluster slot map not refreshed", "err", err)
		}
		return
	}
	t := &topology{}
	old := s.cl.topo.Load()
	moved := 0
	s.mu.RLock() // no Close meanwhile: new nodes start batchers
	defer s.mu.RUnlock()
	s.cl.mu.Lock()
	defer s.cl.mu.Unlock()
	for _, r := range slots {
		if len(r.Nodes) == 0 || r.Start < 0 || r.End >= numSlots || r.Start > r.End {
			continue
		}
		addr := r.Nodes[0].Addr
		c := clients[addr]
		n := s.cl.nodes[addr]
		if n == nil {
			if c == nil || s.closed {
				continue
			}
			n = &node{id: len(s.cl.nodes) + 1, addr: addr, reqs: make(chan *call, s.opts.MaxBatch*s.opts.Pipelines),
				gate: newGate(s.opts.Pipelines, groupSlot)}
			n.client.Store(c)
			s.cl.nodes[addr] = n
			s.workers.Add(s.opts.Pipelines)
			for range s.opts.Pipelines {
				go s.batcher(n.reqs, nil, n, n.gate)
			}
		} else if c != nil && n.client.Load() != c {
			n.client.Store(c) // the ClusterClient replaced its client for addr
		}
		for i := r.Start; i <= r.End; i++ {
			t.slots[i] = n
			if old != nil && old.slots[i] != n {
				moved++
			}
		}
	}
	s.cl.topo.Store(t)
	if moved > 0 {
		masters := make([]string, 0, len(slots))
		for _, r := range slots {
			if len(r.Nodes) > 0 {
				masters = append(masters, r.Nodes[0].Addr)
			}
		}
		s.log.Info("redisstore: cluster slots moved to another master", "slots", moved, "masters", masters, "from", from)
	}
}

// afterPipeline runs after a pipeline to master n: it resends the script calls that n refused
// with MOVED to the master named (the script did not run on n), marks n failing or not, and
// kicks a refresh when the map looks stale.
func (s *Store) afterPipeline(ctx context.Context, n *node, scripts []*scriptCall) {
	ok, sick, stale := false, false, false
	var moved map[string][]*scriptCall
	for _, sc := range scripts {
		err := sc.cmd.Err()
		switch {
		case err == nil:
			ok = true
		case isMoved(err):
			stale = true
			if addr := movedAddr(err); addr != "" {
				if moved == nil {
					moved = map[string][]*scriptCall{}
				}
				moved[addr] = append(moved[addr], sc)
			}
		case isClusterState(err):
			stale = true
		case !isReply(err):
			sick = true
		default:
			ok = true // a script error: n answered
		}
	}
	if ok && !sick {
		n.failing.Store(false)
	} else if sick {
		n.failing.Store(true)
	}
	if stale || sick {
		s.kickRefresh()
	}
	for addr, scs := range moved {
		c := s.clientOf(addr)
		if c == nil {
			// A node unknown at the last refresh (a replica promoted since): refresh now.
			s.refresh(ctx)
			if c = s.clientOf(addr); c == nil {
				continue // these calls fail with MOVED
			}
		}
		pipe := c.Pipeline()
		takes := 0
		for _, sc := range scs {
			cmd := scriptCmd(ctx, sc.cmd.Args())
			sc.cmd = cmd
			takes += len(sc.calls)
			_ = pipe.Process(ctx, once{cmd})
		}
		s.execPipe(ctx, pipe, takes)
		s.retryNoScript(ctx, c, scs)
	}
}

// clientOf returns the client of the node at addr, if the last refresh knew it.
func (s *Store) clientOf(addr string) *redis.Client {
	s.cl.mu.Lock()
	defer s.cl.mu.Unlock()
	if n := s.cl.nodes[addr]; n != nil {
		if c := n.client.Load(); c != nil {
			return c
		}
	}
	return s.cl.clients[addr]
}

// isReply reports whether err is a reply of Redis (the server answered), rather than a
// failure to reach it.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.ErrClosed)
}

func isMoved(err error) bool { return isReply(err) && strings.HasPrefix(err.Error(), "MOVED ") }

// isClusterState: replies of a node that cannot serve the slot now (not executed).
func isClusterState(err error) bool {
	if !isReply(err) {
		return false
	}
	msg := err.Error()
	for _, p := range [...]string{"ASK ", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "READONLY", "LOADING"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// movedAddr is the address of "MOVED <slot> <host:port>".
func movedAddr(err error) string {
	f := strings.Fields(err.Error())
	if len(f) != 3 {
		return ""
	}
	if _, _, e := net.SplitHostPort(f[2]); e != nil {
		return ""
	}
	return f[2]
}

// keySlot is the Cluster slot of key: the CRC16 of its hash tag (the text between the first
// "{" and the first "}" after it, if not empty), or of the whole key.
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % numSlots
}

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
