package limiter

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are the Limiter's counters:
//
//   - warden.ratelimit.decisions{domain, decision=allowed|over_limit, source=store|cache|fallback|fail_open}
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
type instruments struct {
	decisions, unavailable, detailed, transitions metric.Int64Counter
	// toState holds the attribute set of each breaker state, for transitions.
	toState [len(breakerStateNames)][]metric.AddOption
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
	if in.decisions, err = m.Int64Counter("warden.ratelimit.decisions",
		metric.WithDescription("Rate limit decisions."), metric.WithUnit("{decision}")); err != nil {
		return in, err
	}
	if in.unavailable, err = m.Int64Counter("warden.ratelimit.store_unavailable",
		metric.WithDescription("Rate limit decisions taken without the store, by failure policy."), metric.WithUnit("{decision}")); err != nil {
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

// domainMetrics holds one domain's precomputed attribute sets, so that counting allocates
// nothing per request.
type domainMetrics struct {
	in     *instruments
	domain string
	// Each option sits in its own slice, passed with "...": a variadic call building the
	// slice would allocate on every call.
	decisions [2][len(sourceNames)][]metric.AddOption // [over limit][source]
	fallbacks [len(reasonNames)][]metric.AddOption    // [reason]
}

func (in *instruments) forDomain(domain string, policy FailurePolicy) domainMetrics {
	dm := domainMetrics{in: in, domain: domain}
	for o, decision := range []string{"allowed", "over_limit"} {
		for s, source := range sourceNames {
			dm.decisions[o][s] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
				attribute.String("domain", domain), attribute.String("decision", decision), attribute.String("source", source)))}
		}
	}
	for r, reason := range reasonNames {
		dm.fallbacks[r] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("domain", domain),
			attribute.String("policy", policy.String()), attribute.String("reason", reason)))}
	}
	// Every series exists from the start (at 0), so that a rate or an alert on, say, the
	// fail_open source sees the first such decision.
	ctx := context.Background()
	for o := range dm.decisions {
		for s := range dm.decisions[o] {
			in.decisions.Add(ctx, 0, dm.decisions[o][s]...)
		}
	}
	for r := range dm.fallbacks {
		in.unavailable.Add(ctx, 0, dm.fallbacks[r]...)
	}
	return dm
}

func (dm *domainMetrics) decision(ctx context.Context, allowed bool, src Source) {
	o := 0
	if !allowed {
		o = 1
	}
	dm.in.decisions.Add(ctx, 1, dm.decisions[o][src]...)
}

func (dm *domainMetrics) fallback(ctx context.Context, reason int) {
	dm.in.unavailable.Add(ctx, 1, dm.fallbacks[reason]...)
}

func (dm *domainMetrics) detailed(ctx context.Context, st *DescriptorStatus) {
	decision := "allowed"
	if st.Code == CodeOverLimit {
		decision = "over_limit"
	}
	dm.in.detailed.Add(ctx, 1, metric.WithAttributes(attribute.String("domain", dm.domain),
		attribute.String("limit", st.Name), attribute.String("decision", decision), attribute.Bool("shadow", st.Shadow)))
}
