package envoy

import (
	"context"
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// RateLimiter decides on rate limits: *service.Server in process, or a
// wardenv1.WardenServiceClient remotely.
type RateLimiter interface {
	CheckRateLimit(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (*wardenv1.CheckRateLimitResponse, error)
}

// PooledRateLimiter is a RateLimiter whose answers are handed back once read: *service.Server
// in process (CheckRateLimitPooled). The adapter converts the answer to Envoy's, then calls
// Release, after which it reads nothing of the answer (the strings and metadata it copied
// excepted), so that the next call reuses its messages instead of allocating them. release
// may be nil.
type PooledRateLimiter interface {
	CheckRateLimitPooled(ctx context.Context, req *wardenv1.CheckRateLimitRequest) (resp *wardenv1.CheckRateLimitResponse, release interface{ Release() }, err error)
}

// RateLimitConfig configures a RateLimitServer. The zero value is usable.
type RateLimitConfig struct {
	// Disabled makes ShouldRateLimit answer UNIMPLEMENTED (config: envoy.rls.enabled false).
	Disabled bool `yaml:"-"`
	// ResponseHeaders adds Warden's RateLimit-Policy, RateLimit and (when over the limit)
	// Retry-After headers to the client's response through response_headers_to_add (config:
	// envoy.rls.response_headers). Default off, as in envoyproxy/ratelimit.
	ResponseHeaders bool `yaml:"response_headers"`
	// LimitResponseHeaders adds envoyproxy/ratelimit's own three headers, with its semantics
	// (src/service/ratelimit.go): the limit, what is left and the seconds until its window
	// resets, of the descriptor closest to its limit, or of the last one over it (config:
	// envoy.rls.limit_response_headers_enabled, its LIMIT_RESPONSE_HEADERS_ENABLED). Default
	// off.
	LimitResponseHeaders bool `yaml:"limit_response_headers_enabled"`
	// LimitHeader, RemainingHeader and ResetHeader name them (config:
	// envoy.rls.limit_limit_header, limit_remaining_header, limit_reset_header, its
	// LIMIT_LIMIT_HEADER, LIMIT_REMAINING_HEADER, LIMIT_RESET_HEADER). Defaults
	// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset.
	LimitHeader     string `yaml:"limit_limit_header"`
	RemainingHeader string `yaml:"limit_remaining_header"`
	ResetHeader     string `yaml:"limit_reset_header"`
	// QuotaMode treats every descriptor as in quota mode: the answer is OVER_LIMIT only when
	// every descriptor (unlimited ones aside) is over its limit (config: envoy.rls.quota_mode,
	// envoyproxy/ratelimit's QUOTA_MODE). Meant for domains that count every hit (files in
	// envoyproxy/ratelimit's format): in an all_or_nothing domain a request refused by one
	// limit consumed nothing from the others, even though it is answered OK.
	QuotaMode bool `yaml:"quota_mode"`
	// ShadowMode answers OK whatever the limits say, statuses unchanged (config:
	// envoy.rls.shadow_mode, envoyproxy/ratelimit's SHADOW_MODE).
	ShadowMode bool `yaml:"shadow_mode"`
	// DynamicMetadata sets the response's dynamic_metadata as envoyproxy/ratelimit does
	// (config: envoy.rls.dynamic_metadata, its RESPONSE_DYNAMIC_METADATA): the domain, each
	// descriptor's entries ("key=value"), limit override and hits_addend, the request's
	// hits_addend, and the merged metadata of the limits that passed. Default off.
	DynamicMetadata bool `yaml:"dynamic_metadata"`
	// UnavailableAsError answers UNAVAILABLE when a fail_closed domain's store cannot decide,
	// for an Envoy run with failure_mode_deny: true that wants its own failure stat (config:
	// envoy.rls.unavailable: error). By default the answer is the policy's decision,
	// OVER_LIMIT, which Envoy enforces whatever its failure_mode_deny.
	UnavailableAsError bool `yaml:"-"`
	// ReuseAnswers makes ShouldRateLimit build Warden's request and Envoy's answer in reused
	// memory: they are handed back for the next call's use once Codec has marshalled the
	// answer. The same conditions as AuthConfig.ReuseAnswers apply: set it only on a server
	// whose codec is Codec and where nothing reads a sent answer after marshalling;
	// cmd/warden does. An answer never marshalled by Codec is simply not reused.
	ReuseAnswers bool `yaml:"-"`
}

// RateLimitServer implements envoy.service.ratelimit.v3.RateLimitService by asking a
// RateLimiter: a drop-in for envoyproxy/ratelimit. Create it with NewRateLimitServer; it is
// safe for concurrent use, and SetConfig may be called while it serves.
type RateLimitServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
	rl  RateLimiter
	cfg atomic.Pointer[RateLimitConfig]
}

// NewRateLimitServer returns a RateLimitServer asking rl.
func NewRateLimitServer(rl RateLimiter, cfg RateLimitConfig) *RateLimitServer {
	s := &RateLimitServer{rl: rl}
	s.SetConfig(cfg)
	return s
}

// SetConfig replaces the configuration for the following calls.
func (s *RateLimitServer) SetConfig(cfg RateLimitConfig) {
	if cfg.LimitHeader == "" {
		cfg.LimitHeader = "RateLimit-Limit"
	}
	if cfg.RemainingHeader == "" {
		cfg.RemainingHeader = "RateLimit-Remaining"
	}
	if cfg.ResetHeader == "" {
		cfg.ResetHeader = "RateLimit-Reset"
	}
	s.cfg.Store(&cfg)
}

// ShouldRateLimit answers one request of Envoy's rate limit filter. When the store cannot
// decide, the answer is the domain's failure policy's decision (fail_closed: OVER_LIMIT with
// Retry-After, marked store-unavailable; see markUnavailable), not an error that Envoy would
// turn into an allow by default; UnavailableAsError restores the UNAVAILABLE error.
func (s *RateLimitServer) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	cfg := s.cfg.Load()
	if cfg.Disabled {
		return nil, status.Error(codes.Unimplemented, "the rate limit service is not enabled on this Warden (config: envoy.rls.enabled)")
	}
	// envoyproxy/ratelimit refuses both with an error (src/service/ratelimit.go,
	// shouldRateLimitWorker); Warden says INVALID_ARGUMENT where it says UNKNOWN.
	if req.GetDomain() == "" {
		return nil, status.Error(codes.InvalidArgument, "rate limit domain must not be empty")
	}
	if len(req.GetDescriptors()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "rate limit descriptor list must not be empty")
	}
	c := newRLSCall(cfg)
	wreq, err := c.req.fromEnvoy(req)
	if err != nil {
		return c.sent(nil, err)
	}
	wreq.UnavailableAsDenial = !cfg.UnavailableAsError
	var resp *wardenv1.CheckRateLimitResponse
	if pr, ok := s.rl.(PooledRateLimiter); ok {
		var release interface{ Release() }
		resp, release, err = pr.CheckRateLimitPooled(ctx, wreq)
		if release != nil {
			defer release.Release() // after the answer is converted
		}
	} else {
		resp, err = s.rl.CheckRateLimit(ctx, wreq)
	}
	if err != nil {
		return c.sent(nil, err)
	}
	out := c.resp.toEnvoy(resp, len(req.GetDescriptors()), cfg.ResponseHeaders)
	if cfg.QuotaMode {
		out.OverallCode = allQuotasOver(out)
	}
	if cfg.ShadowMode {
		out.OverallCode = rlsv3.RateLimitResponse_OK
	}
	if cfg.LimitResponseHeaders {
		addLimitHeaders(out, resp, cfg, time.Now())
	}
	if cfg.DynamicMetadata {
		out.DynamicMetadata = dynamicMetadata(req, out, resp)
	}
	markUnavailable(out, resp, cfg.ResponseHeaders)
	return c.sent(out, nil)
}

// rlsCall is what one ShouldRateLimit builds in the common case (rlsRequest, rlsResponse),
// in one allocation; with RateLimitConfig.ReuseAnswers it is reused once Codec has
// marshalled its answer (rlsAnswers).
type rlsCall struct {
	req    rlsRequest
	resp   rlsResponse
	pooled bool // from rlsAnswers
}

// rlsAnswers recycles the calls whose answers were marshalled (RateLimitConfig.ReuseAnswers).
var rlsAnswers reused[rlsCall, *rlsCall]

func newRLSCall(cfg *RateLimitConfig) *rlsCall {
	if !cfg.ReuseAnswers {
		return new(rlsCall)
	}
	c := rlsAnswers.get()
	c.pooled = true
	return c
}

// sent passes ShouldRateLimit's result through, a pooled call's answer registered to be
// handed back once Codec has marshalled it (rlsAnswers).
func (c *rlsCall) sent(out *rlsv3.RateLimitResponse, err error) (*rlsv3.RateLimitResponse, error) {
	if c.pooled {
		rlsAnswers.sent(c, unsafe.Pointer(out))
	}
	return out, err
}

// answer is the address of c's answer.
func (c *rlsCall) answer() unsafe.Pointer { return unsafe.Pointer(&c.resp.resp) }

// dynamicMetadata is envoyproxy/ratelimit's response dynamic metadata
// (src/service/ratelimit.go, ratelimitToMetadata): the metadata of the limits whose
// descriptor passed (status OK) is merged, the first value of a key winning unless both are
// structs, which merge.
func dynamicMetadata(req *rlsv3.RateLimitRequest, out *rlsv3.RateLimitResponse, r *wardenv1.CheckRateLimitResponse) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.GetDomain())}
	descs := make([]*structpb.Value, 0, len(req.GetDescriptors()))
	for _, d := range req.GetDescriptors() {
		df := map[string]*structpb.Value{}
		entries := make([]*structpb.Value, len(d.GetEntries()))
		for i, e := range d.GetEntries() {
			entries[i] = structpb.NewStringValue(e.GetKey() + "=" + e.GetValue())
		}
		df["entries"] = structpb.NewListValue(&structpb.ListValue{Values: entries})
		if d.GetLimit() != nil {
			df["limit"] = structpb.NewStringValue(d.GetLimit().String())
		}
		if ha := d.GetHitsAddend(); ha != nil {
			df["hitsAddend"] = structpb.NewNumberValue(float64(ha.GetValue()))
		}
		descs = append(descs, structpb.NewStructValue(&structpb.Struct{Fields: df}))
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: descs})
	if ha := req.GetHitsAddend(); ha != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(ha))
	}
	passed := &structpb.Struct{Fields: map[string]*structpb.Value{}}
	for _, st := range r.GetStatuses() {
		i := int(st.GetDescriptorIndex())
		if st.GetMetadata() == nil || i < 0 || i >= len(out.GetStatuses()) || out.GetStatuses()[i].GetCode() != rlsv3.RateLimitResponse_OK {
			continue
		}
		mergeMetadata(passed, st.GetMetadata())
	}
	if len(passed.GetFields()) > 0 {
		fields["metadata"] = structpb.NewStructValue(passed)
	}
	return &structpb.Struct{Fields: fields}
}

// mergeMetadata merges src into dest: a key dest lacks is added; two structs merge.
func mergeMetadata(dest, src *structpb.Struct) {
	for k, v := range src.GetFields() {
		d, ok := dest.GetFields()[k]
		if !ok {
			dest.Fields[k] = v
			continue
		}
		if ds, ss := d.GetStructValue(), v.GetStructValue(); ds != nil && ss != nil {
			mergeMetadata(ds, ss)
		}
	}
}

// allQuotasOver is the overall code when every descriptor is in quota mode, as
// envoyproxy/ratelimit decides it (src/service/ratelimit.go:253): OVER_LIMIT only if every
// descriptor but the unlimited ones is over its limit (a descriptor no limit applies to
// counts as a quota with room).
func allQuotasOver(out *rlsv3.RateLimitResponse) rlsv3.RateLimitResponse_Code {
	total, over := 0, 0
	for _, ds := range out.GetStatuses() {
		if ds.GetCurrentLimit() == nil && ds.GetLimitRemaining() == math.MaxUint32 {
			continue // unlimited
		}
		total++
		if ds.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
			over++
		}
	}
	if total > 0 && over == total {
		return rlsv3.RateLimitResponse_OVER_LIMIT
	}
	return rlsv3.RateLimitResponse_OK
}

// addLimitHeaders adds envoyproxy/ratelimit's RateLimit-Limit, -Remaining and -Reset headers
// as it computes them (src/service/ratelimit.go, shouldRateLimitWorker): of the descriptor
// with the least limit_remaining, replaced by each descriptor over its limit that is not in
// quota mode; none when no limit applied. Reset is the seconds left in the limit's window
// (src/utils/utilities.go, CalculateReset).
func addLimitHeaders(out *rlsv3.RateLimitResponse, r *wardenv1.CheckRateLimitResponse, cfg *RateLimitConfig, now time.Time) {
	quota := func(i int) (bool, time.Duration) {
		for _, st := range r.GetStatuses() {
			if int(st.GetDescriptorIndex()) == i {
				return st.GetQuotaMode(), st.GetWindow().AsDuration()
			}
		}
		return false, 0
	}
	min, pick := uint32(math.MaxUint32), -1
	var window time.Duration
	for i, ds := range out.GetStatuses() {
		q, w := quota(i)
		if ds.GetCurrentLimit() != nil && ds.GetLimitRemaining() < min {
			min, pick, window = ds.GetLimitRemaining(), i, w
		}
		if ds.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT && !q {
			min, pick, window = 0, i, w
		}
	}
	if pick < 0 {
		return
	}
	ds := out.GetStatuses()[pick]
	out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd,
		&corev3.HeaderValue{Key: cfg.LimitHeader, Value: strconv.FormatUint(uint64(ds.GetCurrentLimit().GetRequestsPerUnit()), 10)},
		&corev3.HeaderValue{Key: cfg.RemainingHeader, Value: strconv.FormatUint(uint64(ds.GetLimitRemaining()), 10)},
		&corev3.HeaderValue{Key: cfg.ResetHeader, Value: strconv.FormatInt(wholeSeconds(0, window, now), 10)})
}

// RateLimitRequestFromEnvoy maps an RLS request to a Warden CheckRateLimit request, with
// envoyproxy/ratelimit's hits_addend semantics (src/utils/utilities.go, GetHitsAddends): a
// descriptor's own hits_addend, when set, is its cost (0 checks without consuming); otherwise
// the request's hits_addend, where 0 (unset) means 1.
//
// A descriptor's limit override (descriptor.limit, from route metadata) replaces the
// configured limit, as in envoyproxy/ratelimit (src/config/config_impl.go, GetLimit): a fixed
// window of requests_per_unit per unit. is_negative_hits (a refund) is refused with
// INVALID_ARGUMENT when the descriptor's cost is not 0: Warden does not refund hits, and
// envoyproxy/ratelimit, which ignores the flag, would count the refund as more hits.
func RateLimitRequestFromEnvoy(req *rlsv3.RateLimitRequest) (*wardenv1.CheckRateLimitRequest, error) {
	return new(rlsRequest).fromEnvoy(req)
}

// fromEnvoy is RateLimitRequestFromEnvoy, the request built in a (zero).
func (a *rlsRequest) fromEnvoy(req *rlsv3.RateLimitRequest) (*wardenv1.CheckRateLimitRequest, error) {
	ds := req.GetDescriptors()
	entries := 0
	for _, d := range ds {
		entries += len(d.GetEntries())
	}
	a.cost = int64(max(1, req.GetHitsAddend()))
	out := &a.req
	out.Domain, out.Cost = req.GetDomain(), &a.cost
	cost := a.cost
	var backing []wardenv1.RateLimitDescriptor_Entry
	var ptrs []*wardenv1.RateLimitDescriptor_Entry
	var descs []wardenv1.RateLimitDescriptor
	if entries <= len(a.entries) && len(ds) <= len(a.descs) {
		backing, ptrs = a.entries[:entries], a.entryPtrs[:entries]
		descs, out.Descriptors = a.descs[:len(ds)], a.descPtrs[:len(ds)]
	} else {
		backing = make([]wardenv1.RateLimitDescriptor_Entry, entries)
		ptrs = make([]*wardenv1.RateLimitDescriptor_Entry, entries)
		descs = make([]wardenv1.RateLimitDescriptor, len(ds))
		out.Descriptors = make([]*wardenv1.RateLimitDescriptor, len(ds))
	}
	k := 0
	for i, d := range ds {
		wd := &descs[i]
		start := k
		for _, e := range d.GetEntries() {
			backing[k].Key, backing[k].Value = e.GetKey(), e.GetValue()
			ptrs[k] = &backing[k]
			k++
		}
		wd.Entries = ptrs[start:k:k]
		c := cost
		if ha := d.GetHitsAddend(); ha != nil {
			if ha.GetValue() > math.MaxInt64 {
				return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].hits_addend: too large", i)
			}
			c = int64(ha.GetValue())
			wd.Cost = new(int64) // only here: a pointer to c would move c to the heap
			*wd.Cost = c
		}
		if d.GetIsNegativeHits() && c != 0 {
			return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].is_negative_hits: Warden does not refund hits", i)
		}
		if o := d.GetLimit(); o != nil {
			w, ok := unitWindow[o.GetUnit()]
			if !ok {
				return nil, status.Errorf(codes.InvalidArgument, "descriptors[%d].limit.unit: %v is not a unit", i, o.GetUnit())
			}
			wd.Limit = &wardenv1.RateLimitDescriptor_LimitOverride{RequestsPerUnit: int64(o.GetRequestsPerUnit()), Window: durationpb.New(w)}
		}
		out.Descriptors[i] = wd
	}
	return out, nil
}

// RateLimitResponseToEnvoy maps Warden's answer to Envoy's: one status per request descriptor,
// in order, as envoyproxy/ratelimit answers. A descriptor no limit applied to (unknown domain,
// no matching descriptor) is OK with no current_limit; an unlimited one is OK with
// limit_remaining MaxUint32 (envoyproxy/ratelimit's README, example 5); a shadow-mode one is
// always OK. current_limit carries the limit's name, requests_per_unit and unit (with
// unit_multiplier for periods such as 30 s), so Envoy's enable_x_ratelimit_headers can compute
// its own X-RateLimit headers. With headers set, Warden's RateLimit headers are added to the
// client's response.
func RateLimitResponseToEnvoy(r *wardenv1.CheckRateLimitResponse, descriptors int, headers bool) *rlsv3.RateLimitResponse {
	return new(rlsResponse).toEnvoy(r, descriptors, headers)
}

// toEnvoy is RateLimitResponseToEnvoy, the answer built in a (zero).
func (a *rlsResponse) toEnvoy(r *wardenv1.CheckRateLimitResponse, descriptors int, headers bool) *rlsv3.RateLimitResponse {
	now := time.Now()
	out := &a.resp
	out.OverallCode = rlsv3.RateLimitResponse_OK
	var backing []rlsv3.RateLimitResponse_DescriptorStatus
	if descriptors <= len(a.statuses) {
		backing, out.Statuses = a.statuses[:descriptors], a.statusPtrs[:descriptors]
	} else {
		backing = make([]rlsv3.RateLimitResponse_DescriptorStatus, descriptors)
		out.Statuses = make([]*rlsv3.RateLimitResponse_DescriptorStatus, descriptors)
	}
	if !r.GetAllowed() {
		out.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for i := range out.Statuses {
		backing[i].Code = rlsv3.RateLimitResponse_OK
		out.Statuses[i] = &backing[i]
	}
	for _, st := range r.GetStatuses() {
		i := int(st.GetDescriptorIndex())
		if i < 0 || i >= descriptors {
			continue
		}
		ds := out.Statuses[i]
		window := st.GetWindow().AsDuration()
		if window <= 0 {
			// Unlimited: nothing counted.
			ds.LimitRemaining = math.MaxUint32
			continue
		}
		unit, mult := envoyUnit(window)
		ds.CurrentLimit = a.limit()
		ds.CurrentLimit.RequestsPerUnit, ds.CurrentLimit.Unit = clampUint32(st.GetLimit()), unit
		if st.GetNamed() {
			// Only a name the configuration gave: Envoy copies it into x-ratelimit-limit.
			ds.CurrentLimit.Name = st.GetName()
		}
		if mult > 1 {
			ds.CurrentLimit.UnitMultiplier = wrapperspb.UInt32(mult)
		}
		over := st.GetCode() == wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT
		switch {
		case over: // 0, shadow mode included (src/limiter/base_limiter.go)
		case st.GetRemaining() < 0: // unknown (a fail-open decision): report the full quota
			ds.LimitRemaining = clampUint32(st.GetLimit())
		default:
			ds.LimitRemaining = clampUint32(st.GetRemaining())
		}
		ds.DurationUntilReset = a.duration()
		ds.DurationUntilReset.Seconds = wholeSeconds(st.GetResetAfter().AsDuration(), window, now)
		if over && !st.GetShadow() {
			ds.Code = rlsv3.RateLimitResponse_OVER_LIMIT
		}
	}
	if headers && len(r.GetHeaders()) > 0 {
		out.ResponseHeadersToAdd = make([]*corev3.HeaderValue, len(r.GetHeaders()))
		for i, h := range r.GetHeaders() {
			out.ResponseHeadersToAdd[i] = &corev3.HeaderValue{Key: h.GetName(), Value: h.GetValue()}
		}
	}
	return out
}

// rlsRequest is one allocation for the messages of RateLimitRequestFromEnvoy in the common
// case of a few descriptors and entries (past the arrays' sizes they are allocated apart).
type rlsRequest struct {
	req       wardenv1.CheckRateLimitRequest
	cost      int64
	descPtrs  [1]*wardenv1.RateLimitDescriptor
	descs     [1]wardenv1.RateLimitDescriptor
	entryPtrs [2]*wardenv1.RateLimitDescriptor_Entry
	entries   [2]wardenv1.RateLimitDescriptor_Entry
}

// rlsResponse is one allocation for the messages of RateLimitResponseToEnvoy in the common
// case of a few descriptors; limit and duration hand out its parts, then allocate.
type rlsResponse struct {
	resp       rlsv3.RateLimitResponse
	statusPtrs [1]*rlsv3.RateLimitResponse_DescriptorStatus
	statuses   [1]rlsv3.RateLimitResponse_DescriptorStatus
	limits     [1]rlsv3.RateLimitResponse_RateLimit
	durs       [1]durationpb.Duration
	nl, nd     int
}

func (a *rlsResponse) limit() *rlsv3.RateLimitResponse_RateLimit {
	if a.nl == len(a.limits) {
		return new(rlsv3.RateLimitResponse_RateLimit)
	}
	a.nl++
	return &a.limits[a.nl-1]
}

func (a *rlsResponse) duration() *durationpb.Duration {
	if a.nd == len(a.durs) {
		return new(durationpb.Duration)
	}
	a.nd++
	return &a.durs[a.nd-1]
}

// unitWindow is the window of each unit Envoy can send in a limit override, month and year
// being envoyproxy/ratelimit's 30 and 365 days (src/utils/utilities.go, UnitToDivider).
var unitWindow = map[typev3.RateLimitUnit]time.Duration{
	typev3.RateLimitUnit_SECOND: time.Second,
	typev3.RateLimitUnit_MINUTE: time.Minute,
	typev3.RateLimitUnit_HOUR:   time.Hour,
	typev3.RateLimitUnit_DAY:    24 * time.Hour,
	typev3.RateLimitUnit_MONTH:  30 * 24 * time.Hour,
	typev3.RateLimitUnit_YEAR:   365 * 24 * time.Hour,
}

// wholeSeconds is duration_until_reset as envoyproxy/ratelimit gives it: whole seconds, at
// least 1 (src/utils/utilities.go, CalculateReset: the unit's seconds minus now modulo them).
// Warden's own reset time, rounded up, is that value for its fixed windows; when the counter
// is already full (nothing counted yet) it is the time left in the current window.
func wholeSeconds(reset, window time.Duration, now time.Time) int64 {
	if reset <= 0 {
		w := int64(window / time.Second)
		if w < 1 {
			return 1
		}
		return w - now.Unix()%w
	}
	return int64((reset + time.Second - 1) / time.Second)
}

func clampUint32(v int64) uint32 {
	switch {
	case v < 0:
		return 0
	case v > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(v)
}

// envoyUnit expresses a window as Envoy's unit, times a multiplier when the window is not one
// unit (30 s = SECOND x 30). Month and year are envoyproxy/ratelimit's 30 and 365 days.
func envoyUnit(w time.Duration) (rlsv3.RateLimitResponse_RateLimit_Unit, uint32) {
	const day = 24 * time.Hour
	switch w {
	case 30 * day:
		return rlsv3.RateLimitResponse_RateLimit_MONTH, 1
	case 365 * day:
		return rlsv3.RateLimitResponse_RateLimit_YEAR, 1
	case 7 * day:
		return rlsv3.RateLimitResponse_RateLimit_WEEK, 1
	}
	for _, u := range []struct {
		d    time.Duration
		unit rlsv3.RateLimitResponse_RateLimit_Unit
	}{
		{day, rlsv3.RateLimitResponse_RateLimit_DAY},
		{time.Hour, rlsv3.RateLimitResponse_RateLimit_HOUR},
		{time.Minute, rlsv3.RateLimitResponse_RateLimit_MINUTE},
		{time.Second, rlsv3.RateLimitResponse_RateLimit_SECOND},
	} {
		if w%u.d == 0 && w/u.d <= math.MaxUint32 {
			return u.unit, uint32(w / u.d)
		}
	}
	return rlsv3.RateLimitResponse_RateLimit_UNKNOWN, 1
}
