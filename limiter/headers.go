package limiter

import (
	"fmt"
	"strconv"
	"time"
)

// Header values follow the IETF draft "RateLimit header fields for HTTP"
// (draft-ietf-httpapi-ratelimit-headers): two Structured Fields lists with one item per limit
// that applied, named by the limit's name as an sf-string.
//
//	RateLimit-Policy: "burst";q=10;w=1, "daily";q=1000;w=86400
//	RateLimit: "burst";r=3;t=1, "daily";r=998;t=52000
//
// q is the quota (Limit, or the burst of a token bucket) and w the period in seconds, rounded
// up; r is the remaining quota and t the seconds until the counter is full again, rounded up.
// Limits in shadow mode, unlimited ones and descriptors with no limit are left out; so are
// limits whose remaining quota is unknown (failure policy, cache) from RateLimit.
// Retry-After is delay-seconds, rounded up.

// AppendPolicyHeader appends the RateLimit-Policy field value to b.
func (r *Result) AppendPolicyHeader(b []byte) []byte { return r.appendItems(b, true) }

// AppendRateLimitHeader appends the RateLimit field value to b.
func (r *Result) AppendRateLimitHeader(b []byte) []byte { return r.appendItems(b, false) }

// appendItems appends one list item per limit: its policy (q, w), or its state (r, t).
func (r *Result) appendItems(b []byte, policy bool) []byte {
	first := true
	for i := range r.Statuses {
		s := &r.Statuses[i]
		if !s.Applied || s.Unlimited || s.Shadow || (!policy && s.Remaining < 0) {
			continue
		}
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = appendSFString(b, s.Name)
		if policy {
			b = append(b, ";q="...)
			b = strconv.AppendInt(b, s.Quota, 10)
			b = append(b, ";w="...)
			b = strconv.AppendInt(b, ceilSeconds(s.Limit.Period), 10)
		} else {
			b = append(b, ";r="...)
			b = strconv.AppendInt(b, s.Remaining, 10)
			b = append(b, ";t="...)
			b = strconv.AppendInt(b, ceilSeconds(s.ResetAfter), 10)
		}
	}
	return b
}

// RetryAfterSeconds is the Retry-After value: RetryAfter in seconds, rounded up; 0 when the
// request is allowed (send no Retry-After then).
func (r *Result) RetryAfterSeconds() int64 {
	return ceilSeconds(r.RetryAfter())
}

// Headers returns the three header values as strings (empty when there is nothing to send):
// a convenience over the Append methods, which allocate nothing given a buffer.
func (r *Result) Headers() (policy, rateLimit, retryAfter string) {
	var buf [256]byte
	policy = string(r.AppendPolicyHeader(buf[:0]))
	rateLimit = string(r.AppendRateLimitHeader(buf[:0]))
	if s := r.RetryAfterSeconds(); s > 0 && !r.Allowed {
		retryAfter = strconv.FormatInt(s, 10)
	}
	return policy, rateLimit, retryAfter
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// appendSFString appends s as a Structured Fields string (RFC 9651): quoted, with '"' and
// '\' escaped. Names are printable ASCII (checked by the configuration).
func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b = append(b, '\\', c)
		} else {
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// HeaderStyle chooses the rate-limit headers of an answer. The zero value is HeadersIETF.
type HeaderStyle uint8

const (
	// HeadersIETF: RateLimit-Policy and RateLimit (the IETF draft, above).
	HeadersIETF HeaderStyle = iota
	// HeadersXRateLimit: X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset
	// (seconds until the counter is full again), of the tightest limit (XRateLimit).
	HeadersXRateLimit
	// HeadersBoth: both sets.
	HeadersBoth
)

// ParseHeaderStyle parses "ietf", "x-ratelimit" or "both".
func ParseHeaderStyle(s string) (HeaderStyle, bool) {
	switch s {
	case "ietf":
		return HeadersIETF, true
	case "x-ratelimit":
		return HeadersXRateLimit, true
	case "both":
		return HeadersBoth, true
	}
	return 0, false
}

// UnmarshalText reads a style's name (ParseHeaderStyle); empty is HeadersIETF.
func (s *HeaderStyle) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*s = HeadersIETF
		return nil
	}
	v, ok := ParseHeaderStyle(string(b))
	if !ok {
		return fmt.Errorf("want ietf, x-ratelimit or both, not %q", b)
	}
	*s = v
	return nil
}

// IETF reports whether the style sends the IETF draft's headers.
func (s HeaderStyle) IETF() bool { return s != HeadersXRateLimit }

// XRateLimit reports whether the style sends the X-RateLimit-* headers.
func (s HeaderStyle) XRateLimit() bool { return s != HeadersIETF }

// XRateLimit returns the X-RateLimit-* values: those of the tightest limit that applied (the
// one that denied the request with the longest wait; else the one with the least remaining
// quota, the first on a tie). Limits the RateLimit header leaves out are left out here too.
// ok is false when no limit qualifies (send no X-RateLimit-* header then).
func (r *Result) XRateLimit() (limit, remaining, resetSeconds int64, ok bool) {
	best := -1
	for i := range r.Statuses {
		s := &r.Statuses[i]
		if !s.Applied || s.Unlimited || s.Shadow || s.Remaining < 0 {
			continue
		}
		if best < 0 {
			best = i
			continue
		}
		b := &r.Statuses[best]
		over, bOver := s.Code == CodeOverLimit, b.Code == CodeOverLimit
		switch {
		case over && !bOver, over && bOver && s.RetryAfter > b.RetryAfter, !over && !bOver && s.Remaining < b.Remaining:
			best = i
		}
	}
	if best < 0 {
		return 0, 0, 0, false
	}
	s := &r.Statuses[best]
	return s.Quota, s.Remaining, ceilSeconds(s.ResetAfter), true
}
