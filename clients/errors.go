package clients

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// The functions below turn a denied decision into the gRPC status error a service returns to
// its own client. Messages are generic on purpose: Warden's DenyReason is for the service's
// logs, not for an untrusted caller. The mapping, from the decision's http_status (and its
// stage or reason when the status is unset):
//
//	401, authentication stage      UNAUTHENTICATED
//	403                            PERMISSION_DENIED
//	404 (not owner, other tenant)  NOT_FOUND, so someone else's object looks like a missing one
//	429, rate-limit stage          RESOURCE_EXHAUSTED with RetryInfo (the longest retry_after of
//	                               the limits that refused, else Retry-After) and QuotaFailure
//	                               (one violation per limit that refused)
//	400, 413                       INVALID_ARGUMENT
//	anything else                  PERMISSION_DENIED
//
// Each returns nil for an allowed decision.

// CheckError returns the error for a denied Check decision, or nil if it was allowed.
func CheckError(r *wardenv1.CheckResponse) error {
	if r.GetAllowed() {
		return nil
	}
	st := checkStatus(r)
	return denial(st, r.GetRateLimits(), nil, r.GetResponseHeaders())
}

// checkStatus is the HTTP status of a Check denial: http_status, else derived from the stage
// or the reason.
func checkStatus(r *wardenv1.CheckResponse) int32 {
	if st := r.GetHttpStatus(); st != 0 {
		return st
	}
	switch {
	case r.GetStage() == wardenv1.CheckStage_CHECK_STAGE_AUTHENTICATE:
		return http.StatusUnauthorized
	case r.GetStage() == wardenv1.CheckStage_CHECK_STAGE_RATE_LIMIT, r.GetReason() == wardenv1.DenyReason_DENY_REASON_RATE_LIMITED:
		return http.StatusTooManyRequests
	}
	return http.StatusForbidden
}

// AuthenticateError returns the UNAUTHENTICATED error for a failed authentication, or nil.
func AuthenticateError(r *wardenv1.AuthenticateResponse) error {
	if r.GetAuthenticated() {
		return nil
	}
	return denial(http.StatusUnauthorized, nil, nil, nil)
}

// AuthorizeError returns the error for a denied Authorize decision, or nil.
func AuthorizeError(r *wardenv1.AuthorizeResponse) error {
	if r.GetAllowed() {
		return nil
	}
	st := r.GetHttpStatus()
	if st == 0 {
		st = http.StatusForbidden
	}
	return denial(st, nil, nil, nil)
}

// RateLimitError returns the RESOURCE_EXHAUSTED error for a refused CheckRateLimit, or nil.
func RateLimitError(r *wardenv1.CheckRateLimitResponse) error {
	if r.GetAllowed() {
		return nil
	}
	return denial(http.StatusTooManyRequests, r.GetStatuses(), r.GetRetryAfter(), r.GetHeaders())
}

// denial builds the status error for an HTTP status.
func denial(httpStatus int32, limits []*wardenv1.RateLimitStatus, retryAfter *durationpb.Duration, headers []*wardenv1.Header) error {
	switch httpStatus {
	case http.StatusUnauthorized:
		return status.Error(codes.Unauthenticated, "unauthenticated")
	case http.StatusNotFound:
		return status.Error(codes.NotFound, "not found")
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return status.Error(codes.InvalidArgument, "malformed request")
	case http.StatusTooManyRequests:
		return rateLimited(limits, retryAfter, headers)
	}
	return status.Error(codes.PermissionDenied, "permission denied")
}

// rateLimited is RESOURCE_EXHAUSTED with RetryInfo and QuotaFailure details.
func rateLimited(limits []*wardenv1.RateLimitStatus, retryAfter *durationpb.Duration, headers []*wardenv1.Header) error {
	delay := retryDelay(limits, retryAfter, headers)
	msg := "rate limited"
	if delay > 0 {
		// Whole seconds, rounded up, as Retry-After: "retry after 2s", not "1.503s".
		msg += "; retry after " + strconv.FormatInt(int64((delay+time.Second-1)/time.Second), 10) + "s"
	}
	st := status.New(codes.ResourceExhausted, msg)
	var qf errdetails.QuotaFailure
	for _, l := range limits {
		if l.GetCode() != wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT || l.GetShadow() {
			continue
		}
		d := "limit " + strconv.FormatInt(l.GetLimit(), 10)
		if w := l.GetWindow(); w != nil {
			d += " per " + w.AsDuration().String()
		}
		qf.Violations = append(qf.Violations, &errdetails.QuotaFailure_Violation{Subject: l.GetName(), Description: d + " exceeded"})
	}
	details := make([]protoadapt.MessageV1, 0, 2)
	if delay > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	}
	if len(qf.Violations) > 0 {
		details = append(details, &qf)
	}
	if len(details) == 0 {
		return st.Err()
	}
	withDetails, err := st.WithDetails(details...)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}

// RetryDelay returns how long a caller should wait before retrying a request refused with
// err, from its RetryInfo detail, and false if err carries none.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// retryDelay is the longest retry_after of the limits that refused, else the response's
// retry_after, else the Retry-After header (seconds), else 0.
func retryDelay(limits []*wardenv1.RateLimitStatus, retryAfter *durationpb.Duration, headers []*wardenv1.Header) time.Duration {
	var d time.Duration
	for _, l := range limits {
		if l.GetCode() == wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT && !l.GetShadow() {
			d = max(d, l.GetRetryAfter().AsDuration())
		}
	}
	if d > 0 {
		return d
	}
	if retryAfter != nil {
		if d = retryAfter.AsDuration(); d > 0 {
			return d
		}
	}
	for _, h := range headers {
		if strings.EqualFold(h.GetName(), "retry-after") {
			if n, err := strconv.ParseInt(strings.TrimSpace(h.GetValue()), 10, 64); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}
