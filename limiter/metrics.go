package limiter

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are the Limiter's counters:
//
//   - warden.ratelimit.decisions{domain, decision=allowed|over_limit, source=store|cache|lease|fallback|fail_open|fail_closed}
//   - warden.ratelimit.store_unavailable{domain, policy, reason}: every decision taken
//     without the store by the failure policy (fail_open, fail_closed, local). reason is
//     "unavailable" when the store failed (connection error, error reply) or its circuit
//     breaker was open: Redis really was unavailable; it is "deadline" when the caller's
//     deadline left no time to ask a healthy store (the request never reached Redis); it is
//     "unknown" when the request reached the store and its answer was lost (a timeout on
//     the wire, ErrTimeout, or a dropped connection, ErrLost): the store may have counted
//     it, so Redis's counter can exceed the counted admits by at most these decisions
//     (and the calls whose caller gave up while theirs was on the wire).
//   - warden.ratelimit.limit_decisions{domain, limit, decision, shadow}: per limit, for
//     limits with DetailedMetric
//   - warden.ratelimit.breaker_state{shard}: the store's circuit breakers, 0 closed, 1 open,
//     2 half-open; one per backend (shard attribute) for a Sharded store (Redis Cluster)
//   - warden.ratelimit.breaker_transitions{state}: every change of the breaker's state, by
//     the state entered
//
// decisions and store_unavailable are counted on the hot path in atomic cells (an
// OpenTelemetry Add costs ~0.3-0.5 µs, most of it re-checking a prebuilt attribute set) and
// exported by one observable counter callback per Meter. The cells of a domain live as long
// as the process, across reloads and Limiters, so the counters never go back.
type instruments struct {
	detailed, transitions metric.Int64Counter
	cells                 *cellRegistry
	// toState holds the attribute set of each breaker state, for transitions.
	toState [len(breakerStateNames)][]metric.AddOption
}

// cellRegistry holds the decision cells of every domain counted through one Meter.
type cellRegistry struct {
	mu      sync.Mutex
	domains map[string]*decisionCells
	fallbk  map[[2]string]*fallbackCells // [domain, policy]
}

type decisionCells struct {
	n     [2][len(sourceNames)]atomic.Int64 // [over limit][source]
	attrs [2][len(sourceNames)]metric.ObserveOption
}

type fallbackCells struct {
	n     [len(reasonNames)]atomic.Int64
	attrs [len(reasonNames)]metric.ObserveOption
}

// registries maps a Meter to its cellRegistry: one callback per Meter, however many
// Limiters (one per config generation) count through it.
var registries sync.Map // metric.Meter -> *cellRegistry

func registryFor(m metric.Meter) (*cellRegistry, error) {
	if r, ok := registries.Load(m); ok {
		return r.(*cellRegistry), nil
	}
	r := &cellRegistry{domains: map[string]*decisionCells{}, fallbk: map[[2]string]*fallbackCells{}}
	decisions, err := m.Int64ObservableCounter("warden.ratelimit.decisions",
		metric.WithDescription("Rate limit decisions."), metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	unavailable, err := m.Int64ObservableCounter("warden.ratelimit.store_unavailable",
		metric.WithDescription("Rate limit decisions taken without the store, by failure policy."), metric.WithUnit("{decision}"))
	if err != nil {
		return nil, err
	}
	actual, loaded := registries.LoadOrStore(m, r)
	if loaded {
		return actual.(*cellRegistry), nil
	}
	if _, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.domains {
			for i := range c.n {
				for j := range c.n[i] {
					o.ObserveInt64(decisions, c.n[i][j].Load(), c.attrs[i][j])
				}
			}
		}
		for _, c := range r.fallbk {
			for i := range c.n {
				o.ObserveInt64(unavailable, c.n[i].Load(), c.attrs[i])
			}
		}
		return nil
	}, decisions, unavailable); err != nil {
		registries.Delete(m)
		return nil, err
	}
	return r, nil
}

func (r *cellRegistry) decisionCells(domain string) *decisionCells {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.domains[domain]; ok {
		return c
	}
	c := &decisionCells{}
	for o, decision := range []string{"allowed", "over_limit"} {
		for s, source := range sourceNames {
			c.attrs[o][s] = metric.WithAttributeSet(attribute.NewSet(
				attribute.String("domain", domain), attribute.String("decision", decision), attribute.String("source", source)))
		}
	}
	r.domains[domain] = c
	return c
}

func (r *cellRegistry) fallbackCells(domain string, policy FailurePolicy) *fallbackCells {
	k := [2]string{domain, policy.String()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.fallbk[k]; ok {
		return c
	}
	c := &fallbackCells{}
	for i, reason := range reasonNames {
		c.attrs[i] = metric.WithAttributeSet(attribute.NewSet(attribute.String("domain", domain),
			attribute.String("policy", k[1]), attribute.String("reason", reason)))
	}
	r.fallbk[k] = c
	return c
}

// Why a decision was taken without the store (the reason attribute of store_unavailable).
const (
	reasonUnavailable = iota
	reasonDeadline
	reasonUnknown
)

var reasonNames = [...]string{"unavailable", "deadline", "unknown"}

func newInstruments(m metric.Meter) (instruments, error) {
	var in instruments
	var err error
	if in.cells, err = registryFor(m); err != nil {
		return in, err
	}
	if in.detailed, err = m.Int64Counter("warden.ratelimit.limit_decisions",
		metric.WithDescription("Rate limit decisions per limit, for limits with detailed_metric."), metric.WithUnit("{decision}")); err != nil {
		return in, err
	}
	if in.transitions, err = m.Int64Counter("warden.ratelimit.breaker_transitions",
		metric.WithDescription("Changes of the rate limit store's circuit breaker state, by the state entered."), metric.WithUnit("{transition}")); err != nil {
		return in, err
	}
	for s, name := range breakerStateNames {
		in.toState[s] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("state", name)))}
	}
	return in, nil
}

// observeBreaker exports br's state as the breaker_state gauge, with the attribute
// shard=n when the store is Sharded.
func observeBreaker(m metric.Meter, br *breaker, n int, sharded bool) error {
	var opts []metric.ObserveOption
	if sharded {
		opts = append(opts, metric.WithAttributes(attribute.Int("shard", n)))
	}
	_, err := m.Int64ObservableGauge("warden.ratelimit.breaker_state",
		metric.WithDescription("The rate limit store's circuit breakers: 0 closed, 1 open, 2 half-open."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(br.state()), opts...)
			return nil
		}))
	return err
}

func (in *instruments) transition(ctx context.Context, s BreakerState) {
	in.transitions.Add(ctx, 1, in.toState[s]...)
}

// domainMetrics holds one domain's cells, so that counting allocates nothing per request.
type domainMetrics struct {
	in        *instruments
	domain    string
	decisions *decisionCells
	fallbacks *fallbackCells
}

// forDomain returns domain's cells. Every series exists from the start (at 0), so that a
// rate or an alert on, say, the fail_open source sees the first such decision.
func (in *instruments) forDomain(domain string, policy FailurePolicy) domainMetrics {
	return domainMetrics{in: in, domain: domain,
		decisions: in.cells.decisionCells(domain), fallbacks: in.cells.fallbackCells(domain, policy)}
}

func (dm *domainMetrics) decision(_ context.Context, allowed bool, src Source) {
	o := 0
	if !allowed {
		o = 1
	}
	dm.decisions.n[o][src].Add(1)
}

func (dm *domainMetrics) fallback(_ context.Context, reason int) {
	dm.fallbacks.n[reason].Add(1)
}

func (dm *domainMetrics) detailed(ctx context.Context, st *DescriptorStatus) {
	decision := "allowed"
	if st.Code == CodeOverLimit {
		decision = "over_limit"
	}
	dm.in.detailed.Add(ctx, 1, metric.WithAttributes(attribute.String("domain", dm.domain),
		attribute.String("limit", st.Name), attribute.String("decision", decision), attribute.Bool("shadow", st.Shadow)))
}
