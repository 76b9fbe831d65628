package limiter

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// instruments are the Limiter's counters:
//
//   - warden.ratelimit.decisions{domain, decision=allowed|over_limit, source=store|cache|fallback|fail_open}
//   - warden.ratelimit.store_unavailable{domain, policy}: every decision taken without the
//     store because it failed or its breaker was open (fail_open, fail_closed, local)
//   - warden.ratelimit.limit_decisions{domain, limit, decision, shadow}: per limit, for
//     limits with DetailedMetric
type instruments struct {
	decisions, unavailable, detailed metric.Int64Counter
}

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
	in.detailed, err = m.Int64Counter("warden.ratelimit.limit_decisions",
		metric.WithDescription("Rate limit decisions per limit, for limits with detailed_metric."), metric.WithUnit("{decision}"))
	return in, err
}

// domainMetrics holds one domain's precomputed attribute sets, so that counting allocates
// nothing per request.
type domainMetrics struct {
	in     *instruments
	domain string
	// Each option sits in its own slice, passed with "...": a variadic call building the
	// slice would allocate on every call.
	decisions [2][len(sourceNames)][]metric.AddOption // [over limit][source]
	fallbacks []metric.AddOption
}

func (in *instruments) forDomain(domain string, policy FailurePolicy) domainMetrics {
	dm := domainMetrics{in: in, domain: domain}
	for o, decision := range []string{"allowed", "over_limit"} {
		for s, source := range sourceNames {
			dm.decisions[o][s] = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(
				attribute.String("domain", domain), attribute.String("decision", decision), attribute.String("source", source)))}
		}
	}
	dm.fallbacks = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("domain", domain), attribute.String("policy", policy.String())))}
	return dm
}

func (dm *domainMetrics) decision(ctx context.Context, allowed bool, src Source) {
	o := 0
	if !allowed {
		o = 1
	}
	dm.in.decisions.Add(ctx, 1, dm.decisions[o][src]...)
}

func (dm *domainMetrics) fallback(ctx context.Context) {
	dm.in.unavailable.Add(ctx, 1, dm.fallbacks...)
}

func (dm *domainMetrics) detailed(ctx context.Context, st *DescriptorStatus) {
	decision := "allowed"
	if st.Code == CodeOverLimit {
		decision = "over_limit"
	}
	dm.in.detailed.Add(ctx, 1, metric.WithAttributes(attribute.String("domain", dm.domain),
		attribute.String("limit", st.Name), attribute.String("decision", decision), attribute.Bool("shadow", st.Shadow)))
}
