package service

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"google.golang.org/protobuf/types/known/durationpb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/limiter"
)

// Request-size bounds: enough for any real descriptor set, small enough that one call cannot
// make Warden do unbounded work.
const (
	maxDescriptors = 64
	maxEntries     = 32
	maxEntryBytes  = 1024
)

// rlScratch holds the per-call buffers of a rate-limit decision, reused through a pool so a
// decision allocates only its response.
type rlScratch struct {
	req     limiter.Request
	descs   []limiter.RequestDescriptor
	entries []limiter.Entry
	res     limiter.Result
}

// rlPool recycles scratch buffers; it carries no data from one call to the next.
var rlPool = sync.Pool{New: func() any { return new(rlScratch) }}

// CheckRateLimit checks and consumes the limits that apply to the request's descriptors, all
// or nothing.
func (s *Server) CheckRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error) {
	d := s.deps.Load()
	if d.Limiter == nil {
		return nil, unimplemented("CheckRateLimit: no rate limits are configured (config section rate_limit)")
	}
	sc := rlPool.Get().(*rlScratch)
	defer rlPool.Put(sc)
	if err := sc.fill(req.GetDomain(), req.GetDescriptors(), req.Cost, req.GetTier(), "", nil); err != nil {
		return nil, err
	}
	if err := d.Limiter.Check(ctx, sc.req, &sc.res); err != nil {
		return nil, s.limiterError(ctx, err)
	}
	if !sc.res.Allowed {
		s.audit.LogAttrs(ctx, slogInfo, "rate limited", attrRPC("CheckRateLimit"),
			attrStr("domain", req.GetDomain()), attrStr("tier", req.GetTier()))
	}
	return rateLimitResponse(&sc.res), nil
}

// fill validates a request's descriptors into the scratch request. prefix names the
// request's field for error messages ("" or "rate_limit_"). extra descriptors (a route's)
// come first.
func (sc *rlScratch) fill(domain string, descs []*wardenv1.RateLimitDescriptor, cost *int64, tier, prefix string, extra []limiter.RequestDescriptor) error {
	if domain == "" {
		return invalidArgument(prefix+"domain", "required")
	}
	if len(descs) == 0 && len(extra) == 0 {
		return invalidArgument(prefix+"descriptors", "at least one descriptor is required")
	}
	if len(descs) > maxDescriptors {
		return invalidArgument(prefix+"descriptors", "at most "+strconv.Itoa(maxDescriptors)+" descriptors")
	}
	c := int64(1)
	if cost != nil {
		c = *cost
		if c < 0 {
			return invalidArgument("cost", "must not be negative (0 peeks)")
		}
	}
	sc.descs = append(sc.descs[:0], extra...)
	sc.entries = sc.entries[:0]
	for i, desc := range descs {
		es := desc.GetEntries()
		if len(es) == 0 || len(es) > maxEntries {
			return invalidArgument(prefix+"descriptors["+strconv.Itoa(i)+"].entries", "between 1 and "+strconv.Itoa(maxEntries)+" entries")
		}
		for _, e := range es {
			if e.GetKey() == "" || len(e.GetKey()) > maxEntryBytes || len(e.GetValue()) > maxEntryBytes {
				return invalidArgument(prefix+"descriptors["+strconv.Itoa(i)+"].entries", "keys must be non-empty; keys and values at most 1024 bytes")
			}
		}
	}
	// Entries are appended to one backing array; descriptors slice into it afterwards, so
	// growth of the array does not leave descriptors pointing at a stale copy.
	for _, desc := range descs {
		for _, e := range desc.GetEntries() {
			sc.entries = append(sc.entries, limiter.Entry{Key: e.GetKey(), Value: e.GetValue()})
		}
	}
	off := 0
	for _, desc := range descs {
		n := len(desc.GetEntries())
		rd := limiter.RequestDescriptor{Entries: sc.entries[off : off+n : off+n]}
		if desc.Cost != nil {
			if *desc.Cost < 0 {
				return invalidArgument(prefix+"descriptors.cost", "must not be negative (0 peeks)")
			}
			rd.Cost, rd.HasCost = *desc.Cost, true
		}
		sc.descs = append(sc.descs, rd)
		off += n
	}
	sc.req = limiter.Request{Domain: domain, Descriptors: sc.descs, Cost: c, Tier: tier}
	return nil
}

// limiterError maps the limiter's errors to codes.
func (s *Server) limiterError(ctx context.Context, err error) error {
	var re *limiter.RequestError
	switch {
	case errors.As(err, &re):
		return invalidArgument(re.Field, re.Reason)
	case errors.Is(err, limiter.ErrUnavailable):
		return unavailable("the rate-limit store")
	}
	return internal(ctx, s.log, "ratelimit", err)
}

func rateLimitResponse(r *limiter.Result) *wardenv1.CheckRateLimitResponse {
	resp := &wardenv1.CheckRateLimitResponse{Allowed: r.Allowed, Statuses: rateLimitStatuses(r)}
	resp.Headers = rateLimitHeaders(r, nil)
	if !r.Allowed {
		resp.RetryAfter = durationpb.New(r.RetryAfter())
	}
	return resp
}

func rateLimitStatuses(r *limiter.Result) []*wardenv1.RateLimitStatus {
	n := 0
	for i := range r.Statuses {
		if r.Statuses[i].Applied {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]*wardenv1.RateLimitStatus, 0, n)
	for i := range r.Statuses {
		st := &r.Statuses[i]
		if !st.Applied {
			continue
		}
		ps := &wardenv1.RateLimitStatus{
			Code:            wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK,
			Name:            st.Name,
			Limit:           st.Quota,
			Remaining:       st.Remaining,
			ResetAfter:      durationpb.New(st.ResetAfter),
			Window:          durationpb.New(st.Limit.Period),
			DescriptorIndex: int32(i),
			Shadow:          st.Shadow,
		}
		if st.Code == limiter.CodeOverLimit {
			ps.Code = wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT
			ps.RetryAfter = durationpb.New(st.RetryAfter)
		}
		out = append(out, ps)
	}
	return out
}

// rateLimitHeaders appends RateLimit-Policy, RateLimit and (when denied) Retry-After.
func rateLimitHeaders(r *limiter.Result, to []*wardenv1.Header) []*wardenv1.Header {
	policy, rl, retry := r.Headers()
	if policy != "" {
		to = append(to, &wardenv1.Header{Name: "RateLimit-Policy", Value: policy})
	}
	if rl != "" {
		to = append(to, &wardenv1.Header{Name: "RateLimit", Value: rl})
	}
	if !r.Allowed && retry != "" {
		to = append(to, &wardenv1.Header{Name: "Retry-After", Value: retry})
	}
	return to
}
