package limiter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/wardenhq/warden/fielderr"
)

// Config configures a Limiter. Only Store is required; every other field has the default
// stated beside it. Its yaml tags are the schema of Warden's rate_limit section; the injected
// dependencies (stores, clock, logger, meter, peer stats) are not read from YAML.
type Config struct {
	// Store counts the hits. Required.
	Store Store `yaml:"-"`
	// Domains is the initial descriptor configuration (see SetDomains). Default none: every
	// request is allowed with no limit applied.
	Domains []Domain `yaml:"domains"`
	// Now is the clock of the over-limit cache and the circuit breaker (the store keeps its
	// own). Default time.Now.
	Now func() time.Time `yaml:"-"`
	// Logger receives breaker transitions, store errors and shadow-mode refusals. Default: a
	// logger that discards.
	Logger *slog.Logger `yaml:"-"`
	// Meter creates the decision counters. Default: no-op.
	Meter metric.Meter `yaml:"-"`
	// StoreTimeout is the ceiling of one store call. The store's deadline is the caller's
	// deadline less a margin for answering (a fifth of the time left, between 1ms and 20ms:
	// 4ms of Envoy's 20ms), so that the failure policy can still answer in time, and never
	// later than StoreTimeout from now. Default 1s: a ceiling for callers with no deadline or
	// a long one, high enough that a healthy Redis on a loaded machine never reaches it (250ms
	// was reached on a 2-core machine at load 20 with a 3-master Cluster, and every call past
	// it would be decided by the failure policy). Only the calls already in flight when Redis
	// hangs wait that long: their timeouts open the breaker, which answers the others at once.
	// Negative: no ceiling beyond the caller's deadline. Not applied to stores that implement
	// NonBlocking.
	StoreTimeout time.Duration `yaml:"store_timeout"`
	// Fallback is the in-process store that domains with the Local failure policy count in
	// while Store is failing (memstore.New(...) in cmd/warden). Required if a domain uses
	// Local.
	Fallback Store `yaml:"-"`
	// Replicas is the number of Warden replicas sharing Store: under the Local policy each
	// replica enforces ceil(limit/Replicas). Default 1.
	Replicas int `yaml:"replicas"`
	// BreakerFailures is how many consecutive store failures, spread over at least 50ms (a
	// fifth of BreakerCooldown if shorter) with no success between them, open the circuit
	// breaker. Only evidence of a sick store counts: connection errors, error replies, and
	// requests that reached the store and timed out there (limiter.ErrTimeout); a call whose
	// deadline passed while it waited in this process for a pipeline does not. Default 5.
	BreakerFailures int `yaml:"breaker_failures"`
	// BreakerCooldown is how long an open breaker keeps every call away from the store before
	// letting one real request through as a probe; the probe's success closes the breaker.
	// Default 250ms.
	BreakerCooldown time.Duration `yaml:"breaker_cooldown"`
	// OverLimitCacheSize bounds the over-limit cache: counters known to be over their limit
	// until an instant, answered without a store call. Default 10000; negative disables it.
	OverLimitCacheSize int `yaml:"over_limit_cache_size"`
	// PeerStats, when set, counts every decision under envoyproxy/ratelimit's stat names
	// too. Default nil: not counted.
	PeerStats *PeerStats `yaml:"-"`
}

// NonBlocking is implemented by stores whose Take never waits (in-process stores). The
// Limiter calls them with the caller's context as is, without deriving a deadline, which
// saves a timer and allocations per call.
type NonBlocking interface {
	NonBlocking() bool
}

// Entry is one key/value pair of a request descriptor, as in envoyproxy/ratelimit.
type Entry struct {
	Key, Value string
}

// RequestDescriptor is one descriptor of a request: an ordered list of entries that walks a
// domain's tree and picks at most one limit.
type RequestDescriptor struct {
	Entries []Entry
	// Cost overrides Request.Cost for this descriptor when HasCost is set (envoy's
	// per-descriptor hits_addend).
	Cost    int64
	HasCost bool
	// Override, when its Period is set, replaces the configured limit for this descriptor
	// (Envoy's RateLimitDescriptor.limit, from route metadata): see LimitOverride.
	Override LimitOverride
}

// LimitOverride is a limit a request brings for one descriptor, as Envoy sends it: it applies
// whenever the domain is configured, whether or not the entries match a configured
// descriptor, and counts in a fixed window per distinct entries (envoyproxy/ratelimit,
// src/config/config_impl.go, GetLimit). It has no name, is never in shadow or quota mode,
// replaces nothing and is never replaced. A request with an override allocates its compiled
// limit.
type LimitOverride struct {
	// RequestsPerUnit is the number of units allowed per Period; 0 refuses every request.
	RequestsPerUnit int64
	// Period is the window; 0 means no override.
	Period time.Duration
}

// overrideName names a LimitOverride in Warden's own headers and metrics.
const overrideName = "limit_override"

// compileOverride compiles a request's LimitOverride; field names it in errors.
func compileOverride(o LimitOverride, field string) (*climit, error) {
	if o.RequestsPerUnit < 0 || o.Period < 0 {
		return nil, &RequestError{Field: field, Reason: "must not be negative"}
	}
	rpu := max(o.RequestsPerUnit, 1)
	tl, err := compileTier(field, overrideName, FixedWindow, false, "", rpu, o.Period, 0)
	if err != nil {
		var ce *fielderr.Error
		if errors.As(err, &ce) {
			return nil, &RequestError{Field: ce.Path, Reason: ce.Err.Error()}
		}
		return nil, &RequestError{Field: field, Reason: err.Error()}
	}
	if o.RequestsPerUnit == 0 {
		tl.ban, tl.limit.Limit = true, 0
	}
	return &climit{name: overrideName, base: tl}, nil
}

// Request asks whether a request is within its limits.
type Request struct {
	Domain      string
	Descriptors []RequestDescriptor
	// Cost is the number of units to consume from each limit (envoy's hits_addend). 0 peeks:
	// statuses are computed and nothing is consumed.
	Cost int64
	// Tier is the principal's tier, selecting RateLimit.Tiers; "" uses the base limits.
	Tier string
}

// Code is a descriptor's outcome.
type Code uint8

const (
	// CodeOK: within the limit, or no limit applied.
	CodeOK Code = iota
	// CodeOverLimit: the limit refuses the request (which is still allowed if the limit is in
	// shadow mode).
	CodeOverLimit
)

func (c Code) String() string {
	if c == CodeOverLimit {
		return "OVER_LIMIT"
	}
	return "OK"
}

// Source says who decided a descriptor's status.
type Source uint8

const (
	// FromStore: the store counted it.
	FromStore Source = iota
	// FromCache: the over-limit cache knew the counter was over its limit; the store was not
	// asked.
	FromCache
	// FromFallback: the store failed and the Local policy counted in the fallback store.
	FromFallback
	// FromFailOpen: the store failed and the FailOpen policy allowed the request.
	FromFailOpen
	// FromFailClosed: the store failed and the FailClosed policy refused the request (Check
	// returns an error wrapping ErrUnavailable with this answer in its Result).
	FromFailClosed
	// FromLease: every limit of the request was covered by this replica's leased slice of
	// its quota (RateLimit.Lease); the store was not asked, it counted the units in bulk when
	// the slice was taken.
	FromLease
)

var sourceNames = [...]string{"store", "cache", "fallback", "fail_open", "fail_closed", "lease"}

// Unavailable reports whether the store could not be asked for this status: the failure
// policy decided it.
func (s Source) Unavailable() bool {
	return s == FromFallback || s == FromFailOpen || s == FromFailClosed
}

// UnavailableRetry is the RetryAfter of a status refused by the FailClosed policy: a
// stalled or restarting store is usually back within seconds, and the breaker probes it
// again sooner.
const UnavailableRetry = time.Second

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// DescriptorStatus is the outcome for one request descriptor.
type DescriptorStatus struct {
	Code Code
	// Applied is false when no limit matched the descriptor, or the limit that matched was
	// replaced by another (RateLimit.Replaces); the other fields are then zero.
	Applied bool
	// Unlimited: the limit that matched is "unlimited" (Applied is true, nothing is counted).
	Unlimited bool
	// Shadow: the limit is in shadow mode; CodeOverLimit then does not deny the request.
	Shadow bool
	// QuotaMode: the limit is in quota mode (Descriptor.QuotaMode); its CodeOverLimit denies
	// the request only if every quota-mode limit of the request is over.
	QuotaMode bool
	// Name is the limit's name.
	Name string
	// Named: the configuration gave Name (RateLimit.Name); otherwise Name is Warden's default,
	// the descriptor's path.
	Named bool
	// Metadata is the limit's Descriptor.Metadata (shared: read it, do not modify it).
	Metadata map[string]any
	// Limit is the limit applied (scaled down by Replicas under the Local policy).
	Limit Limit
	// Quota is Limit.Limit, or the burst for a token bucket: what Remaining counts down from.
	Quota int64
	// Remaining is what is left after this request, or -1 when unknown (the store was not
	// asked: FromFailOpen, or FromCache for descriptors other than the cached one).
	Remaining int64
	// ResetAfter is how long until the counter is at its full quota again.
	ResetAfter time.Duration
	// RetryAfter is how long until a retry could be allowed; zero unless CodeOverLimit.
	RetryAfter time.Duration
	Source     Source
}

// Result is Check's answer. Reuse one Result across calls to reuse its Statuses.
type Result struct {
	// Allowed is false when some limit not in shadow mode refused the request.
	Allowed bool
	// Statuses holds one status per request descriptor, in order.
	Statuses []DescriptorStatus
}

// RetryAfter is the longest RetryAfter of the limits that deny the request (zero when
// allowed).
func (r *Result) RetryAfter() time.Duration {
	var d time.Duration
	for i := range r.Statuses {
		if s := &r.Statuses[i]; s.Code == CodeOverLimit && !s.Shadow {
			d = max(d, s.RetryAfter)
		}
	}
	return d
}

// ErrInvalidRequest is wrapped by the errors Check returns for malformed requests; the
// service maps them to codes.InvalidArgument. Use errors.As with *RequestError for the field.
var ErrInvalidRequest = errors.New("limiter: invalid request")

// ErrNoLimit is returned by the admin calls when no limit matches the descriptor.
var ErrNoLimit = errors.New("limiter: no limit matches the descriptor")

// RequestError is a malformed request: Field is a path in Request such as
// "descriptors[1].entries".
type RequestError struct {
	Field  string
	Reason string
}

func (e *RequestError) Error() string { return "invalid request: " + e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalidRequest.
func (e *RequestError) Unwrap() error { return ErrInvalidRequest }

// Limiter decides whether requests are within their limits: it resolves a request's
// descriptors to limits through the domain configuration, asks the store for all of them at
// once (all or nothing), and applies the domain's failure policy when the store fails.
//
// Create one with New and call Check per request; SetDomains replaces the configuration
// atomically (hot reload). A Limiter is safe for concurrent use.
type Limiter struct {
	store, fallback Store
	storeBlocks     bool
	now             func() time.Time
	log             *slog.Logger
	timeout         time.Duration
	replicas        int64
	rules           atomic.Pointer[compiled]
	// brs guard the store, one breaker per backend (brs[Sharded.Shard(tag)]; one in all for
	// a store that is not Sharded), grown under brMu as backends appear.
	brs     atomic.Pointer[[]*breaker]
	brMu    sync.Mutex
	sharded Sharded
	brConf  *breaker               // the threshold, cooldown and span of every breaker
	meter   metric.Meter           // for the breaker_state gauge of each new breaker
	lat     latency                // of the store's answers: its baseline
	lastErr atomic.Pointer[string] // the last store failure, for the log line when a breaker opens
	cache   *overCache
	leases  leaseTable
	pool    sync.Pool
	m       instruments
	peer    *PeerStats
}

// Defaults of Config.
const (
	DefaultStoreTimeout    = time.Second
	DefaultBreakerCooldown = 250 * time.Millisecond
)

// New returns a Limiter, or a *fielderr.Error if the configuration is invalid.
func New(c Config) (*Limiter, error) {
	if c.Store == nil {
		return nil, &fielderr.Error{Path: "store", Err: errors.New("required")}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Meter == nil {
		c.Meter = noop.NewMeterProvider().Meter("")
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.BreakerFailures <= 0 {
		c.BreakerFailures = 5
	}
	if c.BreakerCooldown <= 0 {
		c.BreakerCooldown = DefaultBreakerCooldown
	}
	if c.OverLimitCacheSize == 0 {
		c.OverLimitCacheSize = 10000
	}
	l := &Limiter{
		store:    c.Store,
		fallback: c.Fallback,
		now:      c.Now,
		log:      c.Logger,
		timeout:  c.StoreTimeout,
		replicas: int64(c.Replicas),
		peer:     c.PeerStats,
		brConf: &breaker{threshold: int64(c.BreakerFailures), cooldown: c.BreakerCooldown,
			span: min(c.BreakerCooldown/5, breakerSpan)},
		meter: c.Meter,
	}
	l.sharded, _ = c.Store.(Sharded)
	if nb, ok := c.Store.(NonBlocking); !ok || !nb.NonBlocking() {
		l.storeBlocks = true
	}
	if c.OverLimitCacheSize > 0 {
		l.cache = newOverCache(c.OverLimitCacheSize)
	}
	var err error
	if l.m, err = newInstruments(c.Meter); err != nil {
		return nil, err
	}
	if _, err := l.breaker(0); err != nil {
		return nil, err
	}
	l.pool.New = func() any { return new(scratch) }
	if err := l.SetDomains(c.Domains); err != nil {
		return nil, err
	}
	return l, nil
}

// SetDomains validates domains and, if they are valid, makes them the configuration for the
// following Checks. On error the previous configuration stays.
func (l *Limiter) SetDomains(domains []Domain) error {
	c, err := compile(domains)
	if err != nil {
		return err
	}
	for i, d := range domains {
		if d.FailurePolicy == Local && l.fallback == nil {
			return &fielderr.Error{Path: "domains[" + strconv.Itoa(i) + "].failure_policy", Err: errors.New("local needs a fallback store (Config.Fallback)")}
		}
	}
	for _, d := range c.domains {
		d.metrics = l.m.forDomain(d.name, d.policy)
	}
	if l.peer != nil {
		l.peer.attach(c)
	}
	l.rules.Store(c)
	return nil
}

// scratch holds one Check's buffers; Limiter.pool recycles them.
type scratch struct {
	hits []Hit
	out  []Status
	desc []int     // hit i belongs to request descriptor desc[i]
	lims []*climit // and to limit lims[i]
	all  []*climit // the limit of each request descriptor (nil: none, or replaced)
	drop []int     // applyReplaces' work list
	key  []byte
	// after is the count after each hit of a CountRefused domain (-1: not counted so).
	after []int64
	// Quota leasing (lease.go): each hit's lease, and the work buffers of leaseTake.
	lease []leaseConf
	ls    []leaseHit
	sub   []int // the hits that go to the store
	subH  []Hit
	subO  []Status
	subL  []*climit
}

func (l *Limiter) getScratch() *scratch {
	sc := l.pool.Get().(*scratch)
	sc.hits, sc.out, sc.desc, sc.lims, sc.all = sc.hits[:0], sc.out[:0], sc.desc[:0], sc.lims[:0], sc.all[:0]
	sc.after, sc.lease = sc.after[:0], sc.lease[:0]
	return sc
}

func (l *Limiter) putScratch(sc *scratch) {
	clear(sc.hits[:cap(sc.hits)]) // drop key strings
	clear(sc.lims[:cap(sc.lims)])
	clear(sc.all[:cap(sc.all)])
	clear(sc.subH[:cap(sc.subH)])
	clear(sc.subL[:cap(sc.subL)])
	l.pool.Put(sc)
}

// Check decides req and writes the outcome into res (reusing res.Statuses). An error means no
// decision: a *RequestError (ErrInvalidRequest) for a malformed request, an error wrapping
// ErrUnavailable when the store failed under FailClosed, or ctx's error when ctx ended
// first. With ErrUnavailable, res still holds the FailClosed policy's answer for callers that
// answer a denial rather than an error: every status that needed the store is CodeOverLimit
// with Source FromFailClosed, RetryAfter UnavailableRetry and Remaining -1 (shadow-mode ones
// do not deny). A request whose domain is not configured is allowed with no limit applied, as
// envoyproxy/ratelimit does.
func (l *Limiter) Check(ctx context.Context, req Request, res *Result) error {
	res.Allowed = true
	res.Statuses = res.Statuses[:0]
	if req.Cost < 0 {
		return &RequestError{Field: "cost", Reason: "must not be negative"}
	}
	for range req.Descriptors {
		res.Statuses = append(res.Statuses, DescriptorStatus{})
	}
	d := l.rules.Load().domains[req.Domain]
	sc := l.getScratch()
	defer l.putScratch(sc)
	replaces := false
	for i := range req.Descriptors {
		rd := &req.Descriptors[i]
		if len(rd.Entries) == 0 {
			return &RequestError{Field: "descriptors[" + strconv.Itoa(i) + "].entries", Reason: "empty"}
		}
		if rd.HasCost && rd.Cost < 0 {
			return &RequestError{Field: "descriptors[" + strconv.Itoa(i) + "].cost", Reason: "must not be negative"}
		}
		var cl *climit
		switch {
		case d == nil:
		case rd.Override.Period != 0:
			var err error
			if cl, err = compileOverride(rd.Override, "descriptors["+strconv.Itoa(i)+"].limit"); err != nil {
				return err
			}
		default:
			cl = d.resolve(rd.Entries)
			replaces = replaces || (cl != nil && len(cl.replaces) > 0)
		}
		sc.all = append(sc.all, cl)
	}
	if d == nil {
		return nil
	}
	if replaces {
		sc.drop = d.applyReplaces(sc.all, req.Tier, sc.drop[:0])
	}
	banned := false
	leased := !d.counts // every hit has a lease (checked below)
	for i, cl := range sc.all {
		if cl == nil {
			continue
		}
		rd := &req.Descriptors[i]
		cost := req.Cost
		if rd.HasCost {
			cost = rd.Cost
		}
		tl := cl.tier(req.Tier)
		st := &res.Statuses[i]
		st.Applied, st.Name, st.Named, st.Shadow, st.QuotaMode = true, cl.name, cl.named, cl.shadow, cl.quota
		st.Metadata = cl.metadata
		if tl.unlimited {
			st.Unlimited = true
			continue
		}
		if tl.ban {
			// Over the limit whatever the cost (a peek excepted), without asking the store.
			st.Limit, st.Remaining = tl.limit, 0
			if cost > 0 {
				st.Code, st.RetryAfter, st.ResetAfter = CodeOverLimit, tl.limit.Period, tl.limit.Period
				banned = banned || !(cl.shadow || cl.quota)
			}
			continue
		}
		st.Limit, st.Quota = tl.limit, tl.params.Burst
		key := tl.key
		if key == "" {
			sc.key = d.appendKey(sc.key[:0], rd.Entries, tl)
			key = string(sc.key)
		}
		hl := tl.limit
		if d.counts && hl.Algorithm == FixedWindow {
			// Counted whatever the outcome: the store sees no limit, peerStatuses applies it.
			hl.Limit = maxLimit
		}
		sc.hits = append(sc.hits, Hit{Key: key, Limit: hl, Cost: cost})
		sc.desc = append(sc.desc, i)
		sc.lims = append(sc.lims, cl)
		sc.lease = append(sc.lease, tl.lease)
		leased = leased && tl.lease.units > 0 && cost > 0 && !cl.shadow && !cl.quota
	}
	if banned {
		// A ban (requests_per_unit 0) refuses the request: nothing is consumed.
		res.Allowed = false
		for _, i := range sc.desc {
			res.Statuses[i].Remaining = -1
		}
		if d.peerStats != nil {
			d.countPeer(sc, &req, res)
		}
		d.metrics.decision(ctx, false, FromStore)
		return nil
	}
	if len(sc.hits) == 0 {
		res.quotaVerdict()
		d.metrics.decision(ctx, res.Allowed, FromStore)
		return nil
	}
	tag := d.tag(&req)
	now := l.now()
	if leased {
		src, err := l.leaseTake(ctx, d, tag, sc, res, now)
		if err != nil {
			return err
		}
		d.settle(ctx, sc, &req, res, src)
		return nil
	}
	// A CountRefused domain counts every hit, refused or not: no answer from the cache.
	if !d.counts && l.fromCache(sc, res, tag, now) {
		if d.peerStats != nil {
			d.countPeer(sc, &req, res)
		}
		d.metrics.decision(ctx, false, FromCache)
		return nil
	}
	for range sc.hits {
		sc.out = append(sc.out, Status{})
	}
	src, err := l.take(ctx, d, tag, sc, now)
	if err != nil {
		if src == FromFailClosed {
			failClosed(sc, res)
			d.storeUnavailable()
		}
		return err
	}
	if d.counts && src != FromFailOpen {
		l.peerStatuses(sc, res, src)
	}
	l.fill(ctx, d, sc, res, src, now, tag)
	d.settle(ctx, sc, &req, res, src)
	return nil
}

// settle ends a decision taken by src (the store, a lease, or the failure policy): the peer
// stats, the quota-mode verdict and the decision's count.
func (d *cdomain) settle(ctx context.Context, sc *scratch, req *Request, res *Result, src Source) {
	if d.peerStats != nil {
		if src.Unavailable() {
			d.storeUnavailable()
		}
		d.countPeer(sc, req, res)
	}
	res.quotaVerdict()
	d.metrics.decision(ctx, res.Allowed, src)
}

// quotaVerdict refuses the request when every quota-mode limit that applied (not unlimited,
// not in shadow mode) is over: envoyproxy/ratelimit's rule (src/service/ratelimit.go,
// shouldRateLimitWorker). A quota-mode limit alone never refuses while another has room.
func (r *Result) quotaVerdict() {
	total, over := 0, 0
	for i := range r.Statuses {
		if s := &r.Statuses[i]; s.QuotaMode && !s.Unlimited && !s.Shadow {
			total++
			if s.Code == CodeOverLimit {
				over++
			}
		}
	}
	if total > 0 && over == total {
		r.Allowed = false
	}
}

// tag is the request's hash tag: the value of the domain's HashTagKey, else the domain.
func (d *cdomain) tag(req *Request) string {
	if d.tagKey != "" {
		for i := range req.Descriptors {
			for _, e := range req.Descriptors[i].Entries {
				if e.Key == d.tagKey {
					return e.Value
				}
			}
		}
	}
	return d.name
}

// applyReplaces drops (sets to nil) the limits that another limit of the request replaces,
// as envoyproxy/ratelimit does (src/service/ratelimit.go, constructLimitsToCheck): every
// limit that applied names the limits it replaces, whatever its own kind (counted, a
// requests_per_unit 0 ban, unlimited, itself replaced); a limit so named is not applied,
// unless it is unlimited for this tier. In a PeerFormat domain only limits the configuration
// named can be replaced.
func (d *cdomain) applyReplaces(all []*climit, tier string, drop []int) []int {
	replaced := func(cl *climit) bool {
		if (d.peer && !cl.named) || cl.name == overrideName && !cl.named {
			return false
		}
		for _, o := range all {
			if o == nil || o == cl {
				continue
			}
			for _, r := range o.replaces {
				if r == cl.name {
					return true
				}
			}
		}
		return false
	}
	// Decide every limit against the original set before dropping any.
	for i, cl := range all {
		if cl != nil && !cl.tier(tier).unlimited && replaced(cl) {
			drop = append(drop, i)
		}
	}
	for _, i := range drop {
		all[i] = nil
	}
	return drop
}

// fromCache answers a request from the over-limit cache when one of its counters (not in
// shadow mode) is known to be over its limit: the request is denied and nothing is consumed,
// as the store would have done.
func (l *Limiter) fromCache(sc *scratch, res *Result, tag string, now time.Time) bool {
	if l.cache == nil || l.cache.empty() {
		return false
	}
	hit := -1
	var ce cacheEntry
	for i := range sc.hits {
		if sc.hits[i].Cost == 0 || sc.lims[i].shadow || sc.lims[i].quota {
			continue
		}
		if e, ok := l.cache.get(tag, sc.hits[i].Key, now); ok {
			hit, ce = i, e
			break
		}
	}
	if hit < 0 {
		return false
	}
	res.Allowed = false
	for i := range sc.hits {
		st := &res.Statuses[sc.desc[i]]
		st.Source, st.Remaining = FromCache, -1
	}
	st := &res.Statuses[sc.desc[hit]]
	st.Code, st.Remaining = CodeOverLimit, 0
	st.RetryAfter = time.Duration(ce.until - now.UnixNano())
	st.ResetAfter = max(st.RetryAfter, time.Duration(ce.resetAt-now.UnixNano()))
	return true
}

// take asks the store, through the breaker, and applies the failure policy when it cannot
// answer. It leaves the statuses in sc.out (except for FromFailOpen).
func (l *Limiter) take(ctx context.Context, d *cdomain, tag string, sc *scratch, now time.Time) (Source, error) {
	reason, err := l.tryStore(ctx, tag, sc, now)
	if err == nil {
		return FromStore, nil
	}
	if ctx.Err() != nil {
		// The caller gave up: not the store's fault, and no one to answer.
		return 0, ctx.Err()
	}
	return l.policy(ctx, d, tag, sc, reason, err)
}

// tryStore asks the store through the breaker; on failure it returns the reason to count
// (reasonUnavailable, reasonUnknown, reasonDeadline) with the error.
func (l *Limiter) tryStore(ctx context.Context, tag string, sc *scratch, now time.Time) (int, error) {
	err := errBreakerOpen
	reason := reasonUnavailable
	br := l.breakerFor(tag)
	if ok, probe := br.allow(now); ok {
		var o outcome
		if o, err = l.ask(ctx, br, tag, sc, probe); o == succeeded {
			return 0, nil
		}
		switch {
		case errors.Is(err, ErrTimeout) || errors.Is(err, ErrLost):
			// The request reached the store and its answer was lost: it may have been
			// counted there.
			reason = reasonUnknown
		case o == abandoned && br.state() == BreakerClosed:
			// No answer in time, and no evidence against the store: the caller's deadline
			// was too short for the wait. (With the breaker open, other calls just proved
			// the store sick: this one waited on it too.)
			reason = reasonDeadline
		}
	}
	return reason, err
}

// policy applies the domain's failure policy to a request the store could not decide.
func (l *Limiter) policy(ctx context.Context, d *cdomain, tag string, sc *scratch, reason int, err error) (Source, error) {
	d.metrics.fallback(ctx, reason)
	switch d.policy {
	case FailClosed:
		// Also when only the caller's deadline left no time to ask: the policy's answer to
		// "no decision from the store" is the same (the metric's reason tells them apart).
		return FromFailClosed, fmt.Errorf("%w: domain %q: %w", ErrUnavailable, d.name, err)
	case Local:
		for i := range sc.hits {
			h := &sc.hits[i]
			h.Limit.Limit = ceilDiv(h.Limit.Limit, l.replicas)
			h.Limit.Burst = ceilDiv(h.Limit.Burst, l.replicas)
		}
		if ferr := l.takeFrom(ctx, l.fallback, tag, sc); ferr != nil {
			return 0, fmt.Errorf("%w: domain %q: fallback: %w", ErrUnavailable, d.name, ferr)
		}
		return FromFallback, nil
	}
	return FromFailOpen, nil
}

var errBreakerOpen = errors.New("circuit breaker open")

// breakerSpan is the shortest time over which BreakerFailures consecutive failures open the
// breaker (a fifth of the cooldown if shorter): a stall of this process that times out every
// call in flight at once does not open it, a store that keeps failing does, 50ms later.
const breakerSpan = 50 * time.Millisecond

// ask calls the store for a call that the breaker let through, and always reports the
// call's outcome to the breaker, however the call ends: a probe left unreported would keep
// the breaker from ever closing.
func (l *Limiter) ask(ctx context.Context, br *breaker, tag string, sc *scratch, probe bool) (o outcome, err error) {
	o = abandoned
	defer func() { br.report(l.now(), probe, o) }()
	start := time.Now()
	err = l.storeTake(ctx, tag, sc)
	took := time.Since(start)
	switch {
	case err == nil:
		o = succeeded
		l.lat.observe(took)
	case ctx.Err() != nil:
		o = abandoned // the caller went away
	case errors.Is(err, ErrTimeout):
		// On the wire and no answer: a hung store, if the call had far longer than the
		// store usually takes; a store (or a process) that is merely loaded, if not.
		o = abandoned
		if l.lat.farAbove(took) {
			o = failed
		}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		o = abandoned // the deadline passed before the request was sent
	default:
		o = failed
		if br.state() == BreakerClosed {
			msg := err.Error()
			l.lastErr.Store(&msg)
		}
	}
	return o, err
}

// breakerFor is the breaker of the backend that owns tag.
func (l *Limiter) breakerFor(tag string) *breaker {
	n := 0
	if l.sharded != nil {
		n = max(l.sharded.Shard(tag), 0)
	}
	if brs := *l.brs.Load(); n < len(brs) {
		return brs[n]
	}
	br, err := l.breaker(n)
	if err != nil {
		l.log.Error("rate limit store: breaker gauge", "err", err)
	}
	return br
}

// breaker returns the breaker of backend n, creating it (and those below it) if needed.
func (l *Limiter) breaker(n int) (*breaker, error) {
	l.brMu.Lock()
	defer l.brMu.Unlock()
	var brs []*breaker
	if p := l.brs.Load(); p != nil {
		brs = *p
	}
	var err error
	for len(brs) <= n {
		br := &breaker{threshold: l.brConf.threshold, cooldown: l.brConf.cooldown, span: l.brConf.span}
		br.changed = func(s BreakerState) { l.breakerChanged(br, s) }
		brs = append(brs[:len(brs):len(brs)], br)
		if e := observeBreaker(l.meter, br, len(brs)-1, l.sharded != nil); e != nil && err == nil {
			err = e
		}
	}
	l.brs.Store(&brs)
	return brs[n], err
}

// breakerChanged logs a change of br's state (once: the breaker reports each change once)
// and counts it.
func (l *Limiter) breakerChanged(br *breaker, s BreakerState) {
	ctx := context.Background()
	l.m.transition(ctx, s)
	switch s {
	case BreakerOpen:
		attrs := []slog.Attr{slog.Duration("cooldown", br.cooldown)}
		if p := l.lastErr.Load(); p != nil {
			attrs = append(attrs, slog.String("last_error", *p))
		}
		l.log.LogAttrs(ctx, slog.LevelWarn, "rate limit store failing: circuit breaker open", attrs...)
	case BreakerHalfOpen:
		l.log.LogAttrs(ctx, slog.LevelDebug, "rate limit store: circuit breaker half-open, probing")
	case BreakerClosed:
		l.log.LogAttrs(ctx, slog.LevelInfo, "rate limit store recovered: circuit breaker closed")
	}
}

// storeTake calls the store with the deadline of storeDeadline, and retakes without the
// shadow-mode limits when only they refused (they must not block the others' counting).
func (l *Limiter) storeTake(ctx context.Context, tag string, sc *scratch) error {
	if l.storeBlocks {
		if dl, ok := l.storeDeadline(ctx); ok {
			if !dl.After(time.Now()) {
				return context.DeadlineExceeded // no time left to ask
			}
			if dt, ok := l.store.(DeadlineTaker); ok {
				return l.takeBy(ctx, dt, dl, tag, sc)
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
	}
	return l.takeFrom(ctx, l.store, tag, sc)
}

// storeDeadline is the deadline of a store call: the caller's deadline less answerMargin,
// and no later than StoreTimeout from now.
func (l *Limiter) storeDeadline(ctx context.Context) (time.Time, bool) {
	now := time.Now()
	var dl time.Time
	ok := false
	if l.timeout > 0 {
		dl, ok = now.Add(l.timeout), true
	}
	if cd, has := ctx.Deadline(); has {
		cd = cd.Add(-answerMargin(cd.Sub(now)))
		if !ok || cd.Before(dl) {
			dl, ok = cd, true
		}
	}
	return dl, ok
}

// answerMargin is the time kept, out of the caller's time left, to answer by the failure
// policy when the store has not answered: a fifth, between 1ms and 20ms.
func answerMargin(left time.Duration) time.Duration {
	return min(max(left/5, time.Millisecond), 20*time.Millisecond)
}

// takeBy is takeFrom on a DeadlineTaker, with the store deadline dl as a value.
func (l *Limiter) takeBy(ctx context.Context, s DeadlineTaker, dl time.Time, tag string, sc *scratch) error {
	ok, err := s.TakeBy(ctx, dl, tag, sc.hits, sc.out)
	if err != nil || ok {
		return err
	}
	ctx, cancel := context.WithDeadline(ctx, dl) // rare: a refusal by shadow or quota limits
	defer cancel()
	return retakeWithoutShadow(ctx, l.store, tag, sc)
}

func (l *Limiter) takeFrom(ctx context.Context, s Store, tag string, sc *scratch) error {
	ok, err := s.Take(ctx, tag, sc.hits, sc.out)
	if err != nil || ok {
		return err
	}
	return retakeWithoutShadow(ctx, s, tag, sc)
}

// retakeWithoutShadow handles a refused Take: if every refusal came from a shadow-mode or a
// quota-mode limit, which do not refuse the request by themselves, the hits are taken again
// without those limits (keeping their refused statuses).
func retakeWithoutShadow(ctx context.Context, s Store, tag string, sc *scratch) error {
	for i := range sc.out {
		if !sc.out[i].Allowed && !sc.lims[i].shadow && !sc.lims[i].quota {
			return nil // a real refusal: nothing consumed, statuses are final
		}
	}
	// Move the refused shadow hits to the end and take the rest.
	n := len(sc.hits)
	j := 0
	for i := range n {
		if sc.out[i].Allowed {
			sc.hits[j], sc.out[j], sc.desc[j], sc.lims[j] = sc.hits[i], sc.out[i], sc.desc[i], sc.lims[i]
			j++
		} else {
			sc.hits = append(sc.hits, sc.hits[i])
			sc.out = append(sc.out, sc.out[i])
			sc.desc = append(sc.desc, sc.desc[i])
			sc.lims = append(sc.lims, sc.lims[i])
		}
	}
	k := copy(sc.hits[j:], sc.hits[n:])
	copy(sc.out[j:], sc.out[n:])
	copy(sc.desc[j:], sc.desc[n:])
	copy(sc.lims[j:], sc.lims[n:])
	sc.hits, sc.out, sc.desc, sc.lims = sc.hits[:j+k], sc.out[:j+k], sc.desc[:j+k], sc.lims[:j+k]
	if j == 0 {
		return nil
	}
	_, err := s.Take(ctx, tag, sc.hits[:j], sc.out[:j])
	return err
}

// peerStatuses turns the statuses of the hits a CountRefused domain counted without a limit
// into their limit's verdict, as envoyproxy/ratelimit decides it (src/limiter/base_limiter.go,
// GetResponseDescriptorStatus): the count after the hit is over the limit or not.
func (l *Limiter) peerStatuses(sc *scratch, res *Result, src Source) {
	for i := range sc.hits {
		h := &sc.hits[i]
		lim := res.Statuses[sc.desc[i]].Limit // the configured limit
		if lim.Algorithm != FixedWindow {
			continue
		}
		if src == FromFallback {
			lim.Limit = ceilDiv(lim.Limit, l.replicas)
		}
		s := &sc.out[i]
		after := s.Limit - s.Remaining // the count after this hit, refused or not
		for len(sc.after) <= i {
			sc.after = append(sc.after, -1)
		}
		sc.after[i] = after
		// Still refused if the store refused it without a limit: a cost beyond any limit.
		s.Allowed = s.Allowed && after <= lim.Limit
		s.Limit, s.Remaining, s.RetryAfter = lim.Limit, max(0, lim.Limit-after), 0
		if !s.Allowed {
			s.RetryAfter = s.ResetAfter
		}
		h.Limit = lim
	}
}

// failClosed writes the FailClosed policy's answer into res: the hits' statuses over the
// limit, without a count.
func failClosed(sc *scratch, res *Result) {
	for i := range sc.hits {
		st := &res.Statuses[sc.desc[i]]
		st.Source, st.Code, st.Remaining = FromFailClosed, CodeOverLimit, -1
		st.RetryAfter, st.ResetAfter = UnavailableRetry, UnavailableRetry
		if !st.Shadow && !st.QuotaMode { // quota-mode refusals are weighed by quotaVerdict
			res.Allowed = false
		}
	}
	res.quotaVerdict()
}

// fill turns the store's statuses into the result, and remembers counters found over their
// limit.
func (l *Limiter) fill(ctx context.Context, d *cdomain, sc *scratch, res *Result, src Source, now time.Time, tag string) {
	for i := range sc.hits {
		st := &res.Statuses[sc.desc[i]]
		st.Source = src
		if src == FromFailOpen {
			st.Remaining = -1
			continue
		}
		s := &sc.out[i]
		st.Limit = sc.hits[i].Limit
		st.Quota, st.Remaining, st.ResetAfter, st.RetryAfter = s.Limit, s.Remaining, s.ResetAfter, s.RetryAfter
		if s.Allowed {
			st.Code = CodeOK
		} else {
			st.Code = CodeOverLimit
			if st.Shadow {
				if l.log.Enabled(ctx, slog.LevelInfo) {
					l.log.LogAttrs(ctx, slog.LevelInfo, "shadow mode limit over",
						slog.String("domain", d.name), slog.String("limit", st.Name), slog.String("key", sc.hits[i].Key))
				}
			} else if !st.QuotaMode { // quota-mode refusals are weighed by quotaVerdict
				res.Allowed = false
				// Remember a counter with nothing left: any cost of 1 or more is refused until
				// RetryAfter of a cost-1 request.
				if l.cache != nil && src == FromStore && !d.counts && sc.hits[i].Cost == 1 && s.Remaining == 0 && s.RetryAfter > 0 {
					l.cache.put(tag, sc.hits[i].Key, cacheEntry{
						until:   now.Add(s.RetryAfter).UnixNano(),
						resetAt: now.Add(s.ResetAfter).UnixNano(),
					}, now)
				}
			}
		}
		if sc.lims[i].detailed {
			d.metrics.detailed(ctx, st)
		}
	}
}

// Peek returns the status of one descriptor's counter without consuming anything (a cost 0
// request), asking the store directly (no cache, no failure policy). It returns ErrNoLimit
// when no counted limit matches.
func (l *Limiter) Peek(ctx context.Context, domain, tier string, entries []Entry) (DescriptorStatus, error) {
	d, cl, err := l.lookup(domain, entries)
	if err != nil {
		return DescriptorStatus{}, err
	}
	tl := cl.tier(tier)
	if tl.unlimited {
		return DescriptorStatus{Applied: true, Unlimited: true, Name: cl.name, Named: cl.named, Shadow: cl.shadow, QuotaMode: cl.quota}, nil
	}
	if tl.ban {
		return DescriptorStatus{Applied: true, Name: cl.name, Named: cl.named, Shadow: cl.shadow, QuotaMode: cl.quota, Limit: tl.limit}, nil
	}
	key := tl.key
	if key == "" {
		key = string(d.appendKey(nil, entries, tl))
	}
	hits := []Hit{{Key: key, Limit: tl.limit}}
	out := make([]Status, 1)
	req := Request{Domain: domain, Descriptors: []RequestDescriptor{{Entries: entries}}}
	if _, err := l.store.Take(ctx, d.tag(&req), hits, out); err != nil {
		return DescriptorStatus{}, err
	}
	s := out[0]
	code := CodeOK
	if !s.Allowed {
		code = CodeOverLimit
	}
	return DescriptorStatus{
		Code: code, Applied: true, Shadow: cl.shadow, QuotaMode: cl.quota, Name: cl.name, Named: cl.named, Limit: tl.limit,
		Quota: s.Limit, Remaining: s.Remaining, ResetAfter: s.ResetAfter, RetryAfter: s.RetryAfter,
	}, nil
}

// Reset forgets one descriptor's counters (the base limit's and every tier's) in the store,
// the fallback store and the over-limit cache. The store must implement Resetter.
func (l *Limiter) Reset(ctx context.Context, domain string, entries []Entry) error {
	d, cl, err := l.lookup(domain, entries)
	if err != nil {
		return err
	}
	r, ok := l.store.(Resetter)
	if !ok {
		return errors.New("limiter: the store cannot reset counters")
	}
	fr, _ := l.fallback.(Resetter)
	req := Request{Domain: domain, Descriptors: []RequestDescriptor{{Entries: entries}}}
	tag := d.tag(&req)
	tls := []*tierLimit{&cl.base}
	for _, tl := range cl.tiers {
		tls = append(tls, tl)
	}
	for _, tl := range tls {
		if tl.unlimited || tl.ban {
			continue
		}
		key := string(d.appendKey(nil, entries, tl))
		if err := r.Reset(ctx, tag, key); err != nil {
			return err
		}
		l.leases.remove(key)
		if fr != nil {
			if err := fr.Reset(ctx, tag, key); err != nil {
				return err
			}
		}
		if l.cache != nil {
			l.cache.remove(tag, key)
		}
	}
	return nil
}

func (l *Limiter) lookup(domain string, entries []Entry) (*cdomain, *climit, error) {
	if len(entries) == 0 {
		return nil, nil, &RequestError{Field: "entries", Reason: "empty"}
	}
	d := l.rules.Load().domains[domain]
	if d == nil {
		return nil, nil, fmt.Errorf("%w: unknown domain %q", ErrNoLimit, domain)
	}
	cl := d.resolve(entries)
	if cl == nil {
		return nil, nil, ErrNoLimit
	}
	return d, cl, nil
}
