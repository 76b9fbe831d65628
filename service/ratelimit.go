package service

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

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
	// A route's descriptors for Check (resolveDescriptors), copied into descs by fill.
	routeDescs   []limiter.RequestDescriptor
	routeEntries []limiter.Entry
	// prefix and nExtra map the limiter's field paths back to the request's (requestField).
	prefix string
	nExtra int
}

// rlPool recycles scratch buffers; it carries no data from one call to the next.
var rlPool = sync.Pool{New: func() any { return new(rlScratch) }}

// CheckRateLimit checks and consumes the limits that apply to the request's descriptors, all
// or nothing.
func (s *Server) CheckRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error) {
	return s.checkRateLimit(ctx, req, new(rlAnswer))
}

// CheckRateLimitPooled is CheckRateLimit for a caller that reads the answer at once and then
// hands its messages back with the returned Release, for the next call to reuse: the Envoy
// RLS adapter, which converts the answer to Envoy's. The answer, and every message and slice
// it holds, must not be read after Release (the strings it holds, and its statuses' Metadata,
// may be kept). An answer sent by gRPC is not released: CheckRateLimit allocates its own.
func (s *Server) CheckRateLimitPooled(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, interface{ Release() }, error) {
	a := rlAnswerPool.Get().(*rlAnswer)
	resp, err := s.checkRateLimit(ctx, req, a)
	return resp, a, err
}

var rlAnswerPool = sync.Pool{New: func() any { return new(rlAnswer) }}

// Release zeroes the answer's messages and hands them back for reuse.
func (a *rlAnswer) Release() {
	*a = rlAnswer{}
	rlAnswerPool.Put(a)
}

// checkRateLimit is CheckRateLimit, its answer built in a (zero).
func (s *Server) checkRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest, a *rlAnswer) (resp *wardenv1.CheckRateLimitResponse, err error) {
	d := s.deps.Load()
	ctx, sp := s.start(ctx, spanCheckRateLimit) // spans only when sampled: see span
	if sp.on() {
		sp.set(attrDomain.String(req.GetDomain()))
		defer func() { sp.end(resp.GetAllowed(), wardenv1.DenyReason_DENY_REASON_RATE_LIMITED, err) }()
	}
	if d.Limiter == nil {
		return nil, unimplemented("CheckRateLimit: no rate limits are configured (config section rate_limit)")
	}
	sc := rlPool.Get().(*rlScratch)
	defer rlPool.Put(sc)
	if err := sc.fill(req.GetDomain(), req.GetDescriptors(), req.Cost, req.GetTier(), "", nil); err != nil {
		return nil, err
	}
	if err := d.Limiter.Check(ctx, sc.req, &sc.res); err != nil {
		if !req.GetUnavailableAsDenial() || !errors.Is(err, limiter.ErrUnavailable) {
			return nil, s.limiterError(ctx, sc.requestField(err))
		}
		// The caller asked for the fail_closed policy's answer as a decision: sc.res holds it.
		s.audit.LogAttrs(ctx, slogWarn, "rate-limit store unavailable: denied by fail_closed", attrRPC("CheckRateLimit"),
			attrStr("domain", req.GetDomain()), attrStr("tier", req.GetTier()))
	} else if !sc.res.Allowed {
		s.audit.LogAttrs(ctx, slogInfo, "rate limited", attrRPC("CheckRateLimit"),
			attrStr("domain", req.GetDomain()), attrStr("tier", req.GetTier()))
	}
	return a.response(&sc.res, d.Headers.RateLimit), nil
}

// fill turns a request's descriptors into the scratch request, checking only what the wire
// bounds (a domain, how many descriptors and entries, entry sizes, a limit's window): what a
// limit means (costs, overrides, empty descriptors) is limiter.Check's to validate, once,
// with its field paths, which requestField maps back to the request's. prefix names the
// request's fields ("" or "rate_limit_"). extra descriptors (a route's) come first.
func (sc *rlScratch) fill(domain string, descs []*wardenv1.RateLimitDescriptor, cost *int64, tier, prefix string, extra []limiter.RequestDescriptor) error {
	sc.prefix, sc.nExtra = prefix, len(extra)
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
	}
	sc.descs = append(sc.descs[:0], extra...)
	sc.entries = sc.entries[:0]
	for i, desc := range descs {
		es := desc.GetEntries()
		if len(es) > maxEntries {
			return invalidArgument(prefix+"descriptors["+strconv.Itoa(i)+"].entries", "at most "+strconv.Itoa(maxEntries)+" entries")
		}
		for _, e := range es {
			if e.GetKey() == "" || len(e.GetKey()) > maxEntryBytes || len(e.GetValue()) > maxEntryBytes {
				return invalidArgument(prefix+"descriptors["+strconv.Itoa(i)+"].entries", "keys must be non-empty; keys and values at most 1024 bytes")
			}
		}
		if o := desc.GetLimit(); o != nil {
			// The limiter reads a zero period as "no override": a limit without a valid
			// window is the wire's mistake, not a request without a limit.
			if w := o.GetWindow(); w == nil || !w.IsValid() || w.AsDuration() <= 0 {
				return invalidArgument(prefix+"descriptors["+strconv.Itoa(i)+"].limit.window", "required, positive")
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
			rd.Cost, rd.HasCost = *desc.Cost, true
		}
		if o := desc.GetLimit(); o != nil {
			rd.Override = limiter.LimitOverride{RequestsPerUnit: o.GetRequestsPerUnit(), Period: o.GetWindow().AsDuration()}
		}
		sc.descs = append(sc.descs, rd)
		off += n
	}
	sc.req = limiter.Request{Domain: domain, Descriptors: sc.descs, Cost: c, Tier: tier}
	return nil
}

// requestField rewrites the field path of a *limiter.RequestError from the limiter's
// request (the route's descriptors first, then the caller's) to the caller's own fields:
// "descriptors[i]…" becomes prefix+"descriptors[i−nExtra]…". Other errors pass through.
func (sc *rlScratch) requestField(err error) error {
	var re *limiter.RequestError
	if !errors.As(err, &re) {
		return err
	}
	const d = "descriptors["
	if rest, ok := strings.CutPrefix(re.Field, d); ok {
		if j := strings.IndexByte(rest, ']'); j > 0 {
			if i, perr := strconv.Atoi(rest[:j]); perr == nil && i >= sc.nExtra {
				return &limiter.RequestError{Field: sc.prefix + d + strconv.Itoa(i-sc.nExtra) + rest[j:], Reason: re.Reason}
			}
		}
	}
	return err
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

// rlParts is one allocation for the messages of a rate-limit answer in the common case of a
// few statuses and headers: a decision allocates this, its response and one string for its
// headers, rather than one object per message, duration and header value. Past the arrays'
// sizes the messages are allocated one by one.
type rlParts struct {
	hdrs   [5]wardenv1.Header // RateLimit-Policy, RateLimit, X-RateLimit-* (Retry-After, when denied, is extra)
	hptrs  [6]*wardenv1.Header
	sts    [1]wardenv1.RateLimitStatus
	sptrs  [1]*wardenv1.RateLimitStatus
	durs   [3]durationpb.Duration // reset, window and retry of one status (the overall retry is extra)
	nh, ns int
	nd     int
}

// rlAnswer is a CheckRateLimit response with its parts, allocated together (or reused:
// CheckRateLimitPooled).
type rlAnswer struct {
	resp wardenv1.CheckRateLimitResponse
	rlParts
}

func (p *rlParts) duration(d time.Duration) *durationpb.Duration {
	if p.nd == len(p.durs) {
		return durationpb.New(d)
	}
	x := &p.durs[p.nd]
	p.nd++
	nanos := d.Nanoseconds()
	secs := nanos / 1e9
	x.Seconds, x.Nanos = secs, int32(nanos-secs*1e9)
	return x
}

func (p *rlParts) header(name, value string) *wardenv1.Header {
	if p.nh == len(p.hdrs) {
		return &wardenv1.Header{Name: name, Value: value}
	}
	h := &p.hdrs[p.nh]
	p.nh++
	h.Name, h.Value = name, value
	return h
}

func (p *rlParts) status() *wardenv1.RateLimitStatus {
	if p.ns == len(p.sts) {
		return &wardenv1.RateLimitStatus{}
	}
	st := &p.sts[p.ns]
	p.ns++
	return st
}

// response fills a (zero) with the answer of r.
func (a *rlAnswer) response(r *limiter.Result, style limiter.HeaderStyle) *wardenv1.CheckRateLimitResponse {
	resp := &a.resp
	resp.Allowed = r.Allowed
	resp.Statuses = a.statuses(r, nil)
	resp.Headers = a.headers(r, nil, style)
	if !r.Allowed {
		resp.RetryAfter = a.duration(r.RetryAfter())
	}
	return resp
}

// statuses appends a status per limit that applied.
func (p *rlParts) statuses(r *limiter.Result, to []*wardenv1.RateLimitStatus) []*wardenv1.RateLimitStatus {
	n := 0
	for i := range r.Statuses {
		if r.Statuses[i].Applied {
			n++
		}
	}
	if n == 0 {
		return to
	}
	if to == nil && n <= len(p.sptrs) {
		to = p.sptrs[:0:len(p.sptrs)]
	} else {
		to = slices.Grow(to, n)
	}
	for i := range r.Statuses {
		st := &r.Statuses[i]
		if !st.Applied {
			continue
		}
		ps := p.status()
		ps.Code = wardenv1.RateLimitCode_RATE_LIMIT_CODE_OK
		ps.Name = st.Name
		ps.Limit = st.Quota
		ps.Remaining = st.Remaining
		ps.ResetAfter = p.duration(st.ResetAfter)
		ps.Window = p.duration(st.Limit.Period)
		ps.DescriptorIndex = int32(i)
		ps.Shadow = st.Shadow
		ps.Named = st.Named
		ps.QuotaMode = st.QuotaMode
		if st.Metadata != nil && !st.Unlimited {
			// Rare (envoyproxy/ratelimit's descriptor metadata): converted per answer.
			// rlconfig only produces values structpb accepts.
			ps.Metadata, _ = structpb.NewStruct(st.Metadata)
		}
		ps.StoreUnavailable = st.Source.Unavailable()
		if st.Code == limiter.CodeOverLimit {
			ps.Code = wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT
			ps.RetryAfter = p.duration(st.RetryAfter)
		}
		to = append(to, ps)
	}
	return to
}

// headers appends the rate-limit headers of style (RateLimit-Policy and RateLimit, and/or
// X-RateLimit-Limit, -Remaining and -Reset) and (when denied) Retry-After. The values share
// one string.
func (p *rlParts) headers(r *limiter.Result, to []*wardenv1.Header, style limiter.HeaderStyle) []*wardenv1.Header {
	var buf [256]byte
	var b []byte
	var n, m int // the policy ends at n, RateLimit at m
	if style.IETF() {
		b = r.AppendPolicyHeader(buf[:0])
		n = len(b)
		b = r.AppendRateLimitHeader(b)
		m = len(b)
	}
	var xl, xr int // X-RateLimit-Limit ends at xl, -Remaining at xr, -Reset at len(b)
	lim, rem, reset, xok := r.XRateLimit()
	if xok = xok && style.XRateLimit(); xok {
		if b == nil {
			b = buf[:0]
		}
		b = strconv.AppendInt(b, lim, 10)
		xl = len(b)
		b = strconv.AppendInt(b, rem, 10)
		xr = len(b)
		b = strconv.AppendInt(b, reset, 10)
	}
	var retry int64
	if !r.Allowed {
		retry = r.RetryAfterSeconds()
	}
	if len(b) == 0 && retry == 0 {
		return to
	}
	if to == nil {
		to = p.hptrs[:0:len(p.hptrs)]
	}
	v := string(b)
	if policy := v[:n]; policy != "" {
		to = append(to, p.header("RateLimit-Policy", policy))
	}
	if rl := v[n:m]; rl != "" {
		to = append(to, p.header("RateLimit", rl))
	}
	if xok {
		to = append(to, p.header("X-RateLimit-Limit", v[m:xl]), p.header("X-RateLimit-Remaining", v[xl:xr]),
			p.header("X-RateLimit-Reset", v[xr:]))
	}
	if retry > 0 {
		to = append(to, p.header("Retry-After", strconv.FormatInt(retry, 10)))
	}
	return to
}
