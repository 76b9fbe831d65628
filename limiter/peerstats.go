package limiter

import (
	"math"
	"sort"
	"sync"
	"sync/atomic"
)

// PeerStats counts decisions under envoyproxy/ratelimit's stat names, so that dashboards and
// alerts built on that service keep working: per limit, the counters
// ratelimit.service.rate_limit.<key>.{total_hits,over_limit,near_limit,within_limit,shadow_mode}
// where <key> is the limit's descriptor path as the peer names it ("domain.key_value.key"),
// and the service counters config_load_success, config_load_error and
// call.should_rate_limit.redis_error. It counts what the peer counts (src/limiter/
// base_limiter.go): total_hits is every hit of a counted limit (unlimited and replaced limits
// are not counted), over_limit the hits past the limit, near_limit the hits past
// NearLimitRatio of it and within it, within_limit the hits allowed, shadow_mode the hits
// over a limit in shadow mode.
//
// Keys come from the configuration, so their number is bounded by it; only limits with
// detailed_metric, or under a node with value_to_metric, put request values into their key,
// as the peer does. Those keys are capped at MaxDynamicKeys; past the cap a decision is
// counted under the limit's configured key.
//
// Create one with NewPeerStats and pass it in Config.PeerStats; keep it across reloads (a new
// Limiter on the same PeerStats continues its counters). Counting allocates nothing once a
// key exists. Safe for concurrent use.
type PeerStats struct {
	nearRatio float32
	maxDyn    int

	mu      sync.RWMutex
	keys    map[string]*PeerCounters
	dynamic int // keys created from request values

	loadOK, loadErr, storeErr atomic.Uint64
}

// DefaultMaxDynamicKeys is NewPeerStats' cap on keys made from request values.
const DefaultMaxDynamicKeys = 10000

// NewPeerStats returns a PeerStats. nearLimitRatio is the peer's NEAR_LIMIT_RATIO (0 means its
// default, 0.8); maxDynamicKeys caps the keys made from request values (0 means
// DefaultMaxDynamicKeys).
func NewPeerStats(nearLimitRatio float32, maxDynamicKeys int) *PeerStats {
	if nearLimitRatio <= 0 {
		nearLimitRatio = 0.8
	}
	if maxDynamicKeys <= 0 {
		maxDynamicKeys = DefaultMaxDynamicKeys
	}
	return &PeerStats{nearRatio: nearLimitRatio, maxDyn: maxDynamicKeys, keys: map[string]*PeerCounters{}}
}

// PeerCounters are one key's counters.
type PeerCounters struct {
	TotalHits, OverLimit, NearLimit, WithinLimit, ShadowMode atomic.Uint64
}

// PeerCount is a snapshot of one key's counters.
type PeerCount struct {
	// Key is the stat name between "ratelimit.service.rate_limit." and the counter's name,
	// sanitized as the peer does (':' and '|' become '_', so do the dots of IPv4 addresses).
	Key                                                      string
	TotalHits, OverLimit, NearLimit, WithinLimit, ShadowMode uint64
}

// Counts returns every key's counters, sorted by key.
func (ps *PeerStats) Counts() []PeerCount {
	ps.mu.RLock()
	out := make([]PeerCount, 0, len(ps.keys))
	for k, c := range ps.keys {
		out = append(out, PeerCount{Key: k, TotalHits: c.TotalHits.Load(), OverLimit: c.OverLimit.Load(),
			NearLimit: c.NearLimit.Load(), WithinLimit: c.WithinLimit.Load(), ShadowMode: c.ShadowMode.Load()})
	}
	ps.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// ConfigLoaded counts a configuration load: config_load_success, or config_load_error when
// err is not nil. A nil PeerStats ignores it.
func (ps *PeerStats) ConfigLoaded(err error) {
	switch {
	case ps == nil:
	case err == nil:
		ps.loadOK.Add(1)
	default:
		ps.loadErr.Add(1)
	}
}

// ServiceCounts returns config_load_success, config_load_error and
// call.should_rate_limit.redis_error (decisions the store could not take).
func (ps *PeerStats) ServiceCounts() (loadSuccess, loadError, redisError uint64) {
	return ps.loadOK.Load(), ps.loadErr.Load(), ps.storeErr.Load()
}

// counters returns key's counters, creating them. dynamic keys count against the cap: past
// it, nil.
func (ps *PeerStats) counters(key []byte, dynamic bool) *PeerCounters {
	ps.mu.RLock()
	c := ps.keys[string(key)] // no allocation: the conversion is only for the lookup
	ps.mu.RUnlock()
	if c != nil {
		return c
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if c = ps.keys[string(key)]; c != nil {
		return c
	}
	if dynamic {
		if ps.dynamic >= ps.maxDyn {
			return nil
		}
		ps.dynamic++
	}
	c = new(PeerCounters)
	ps.keys[string(key)] = c
	return c
}

// count adds one hit of cost n against a limit of quota limit whose count went from
// after-n to after (after < 0: unknown, the hit was refused), as the peer does.
func (ps *PeerStats) count(c *PeerCounters, limit, n, after int64, shadow bool) {
	if n <= 0 {
		return
	}
	u := uint64(n)
	c.TotalHits.Add(u)
	L := uint64(max(limit, 0))
	near := uint64(math.Floor(float64(float32(L) * ps.nearRatio)))
	if after < 0 {
		// Refused without a count (a ban, the over-limit cache, an all-or-nothing refusal):
		// every hit is over the limit.
		c.OverLimit.Add(u)
		if shadow {
			c.ShadowMode.Add(u)
		}
		return
	}
	a := uint64(after)
	b := a - min(a, u)
	if a > L {
		over := a - L
		if b >= L {
			over = u
		} else {
			c.NearLimit.Add(L - max(near, b))
		}
		c.OverLimit.Add(over)
		if shadow {
			c.ShadowMode.Add(over)
		}
		return
	}
	if a > near {
		if b >= near {
			c.NearLimit.Add(u)
		} else {
			c.NearLimit.Add(a - near)
		}
	}
	c.WithinLimit.Add(u)
}

// peerStat is a limit's stat key and counters, attached at SetDomains.
type peerStat struct {
	c *PeerCounters
	// dynamic: the key depends on request values (detailed_metric, value_to_metric).
	dynamic bool
}

// attachPeerStats gives every limit of c its counters.
func (ps *PeerStats) attach(c *compiled) {
	var b []byte
	for _, d := range c.domains {
		d.peerStats = ps
		var walk func(lv *level, v2m bool)
		walk = func(lv *level, v2m bool) {
			if lv == nil {
				return
			}
			visit := func(n *node) {
				if n.lim != nil {
					b = appendSanitized(b[:0], n.lim.statKey)
					n.lim.stat = peerStat{c: ps.counters(b, false), dynamic: n.lim.detailed || v2m || n.v2m}
				}
				walk(n.children, v2m || n.v2m)
			}
			for _, n := range lv.exact {
				visit(n)
			}
			for i := range lv.wild {
				visit(lv.wild[i].n)
			}
			for _, n := range lv.keyOnly {
				visit(n)
			}
		}
		walk(d.root, false)
	}
}

// countPeer counts the decision of every limit that applied in res, after fill (or for a
// refusal taken without the store: ban, cache).
func (d *cdomain) countPeer(sc *scratch, req *Request, res *Result) {
	ps := d.peerStats
	for i, cl := range sc.all {
		if cl == nil || cl.stat.c == nil {
			continue // no limit, replaced, or a request's own limit override
		}
		st := &res.Statuses[i]
		if st.Unlimited || st.Source.Unavailable() {
			continue
		}
		rd := &req.Descriptors[i]
		n := req.Cost
		if rd.HasCost {
			n = rd.Cost
		}
		after := int64(-1) // refused: every hit over
		if st.Code == CodeOK {
			after = 0 // allowed, count unknown (a request answered from the cache)
			if st.Remaining >= 0 {
				after = st.Quota - st.Remaining
			}
		}
		if j := sc.hitOf(i); j >= 0 && j < len(sc.after) && sc.after[j] >= 0 {
			after = sc.after[j]
		}
		c := cl.stat.c
		if cl.stat.dynamic {
			sc.key = d.appendStatKey(sc.key[:0], rd.Entries, cl)
			sanitizeInPlace(sc.key)
			if dc := ps.counters(sc.key, true); dc != nil {
				c = dc
			}
		}
		ps.count(c, st.Limit.Limit, n, after, st.Shadow)
	}
}

// hitOf returns the index of the hit of request descriptor i, or -1.
func (sc *scratch) hitOf(i int) int {
	for j, k := range sc.desc {
		if k == i {
			return j
		}
	}
	return -1
}

// storeUnavailable counts a decision the store could not take (the peer's redis_error).
func (d *cdomain) storeUnavailable() {
	if d.peerStats != nil {
		d.peerStats.storeErr.Add(1)
	}
}

// appendStatKey appends the stat key of a request's entries for a limit whose key depends on
// request values, as the peer builds it (src/config/config_impl.go, GetLimit): with
// detailed_metric, every entry as key_value (a value matched by a share_threshold wildcard
// replaced by its pattern); otherwise the configured path, with the request's value for nodes
// with value_to_metric.
func (d *cdomain) appendStatKey(b []byte, entries []Entry, cl *climit) []byte {
	b = append(b, d.name...)
	lv := d.root
	for _, e := range entries {
		var n *node
		if lv != nil {
			n = lv.find(e)
		}
		b = append(b, '.')
		b = append(b, e.Key...)
		switch {
		case n == nil:
		case cl.detailed && n.share:
			b = append(b, '_')
			b = append(b, n.pattern...)
		case cl.detailed:
			if e.Value != "" || !d.shares(entries) {
				b = append(b, '_')
				b = append(b, e.Value...)
			}
		case n.wildcard && n.share:
			b = append(b, '_')
			b = append(b, n.pattern...)
		case n.wildcard && !n.v2m:
			b = append(b, '_')
			b = append(b, n.pattern...)
		case n.wildcard, !n.keyOnly, n.v2m:
			if e.Value != "" {
				b = append(b, '_')
				b = append(b, e.Value...)
			}
		}
		if n != nil {
			lv = n.children
		}
	}
	return b
}

// shares reports whether a node with share_threshold matches one of entries: the peer's
// detailed key then writes "key" for an empty value, not "key_".
func (d *cdomain) shares(entries []Entry) bool {
	lv := d.root
	for _, e := range entries {
		if lv == nil {
			return false
		}
		n := lv.find(e)
		if n == nil {
			return false
		}
		if n.share {
			return true
		}
		lv = n.children
	}
	return false
}

func appendSanitized(b []byte, s string) []byte {
	b = append(b, s...)
	sanitizeInPlace(b)
	return b
}

// sanitizeInPlace is the peer's SanitizeStatName (src/utils/utilities.go): ':' and '|' become
// '_', and so do the dots of anything shaped like an IPv4 address (\d{1,3}(\.\d{1,3}){3}).
func sanitizeInPlace(b []byte) {
	for i, c := range b {
		if c == ':' || c == '|' {
			b[i] = '_'
		}
	}
	// Leftmost, non-overlapping matches, as regexp.ReplaceAllStringFunc finds them: the
	// leftmost-first regexp takes as many digits as it can in each group.
	for i := 0; i < len(b); {
		if end, ok := ipv4At(b, i); ok {
			for j := i; j < end; j++ {
				if b[j] == '.' {
					b[j] = '_'
				}
			}
			i = end
			continue
		}
		i++
	}
}

// ipv4At matches \d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3} at b[i:], each group greedy with
// backtracking, and returns the end of the match.
func ipv4At(b []byte, i int) (int, bool) { return ipv4Group(b, i, 0) }

func ipv4Group(b []byte, pos, group int) (int, bool) {
	n := 0
	for pos+n < len(b) && n < 3 && b[pos+n] >= '0' && b[pos+n] <= '9' {
		n++
	}
	for k := n; k >= 1; k-- {
		if group == 3 {
			return pos + k, true
		}
		if p := pos + k; p < len(b) && b[p] == '.' {
			if end, ok := ipv4Group(b, p+1, group+1); ok {
				return end, true
			}
		}
	}
	return 0, false
}
