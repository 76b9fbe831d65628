package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"

	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
)

// Names with which a rate-limit answer says that Warden's store could not be asked, so that
// operators can tell the failure policy's answer from a counted one.
const (
	// HeaderStoreUnavailable is added to the client's response when the fail_closed policy
	// refused the request: "x-warden-ratelimit: store-unavailable".
	HeaderStoreUnavailable = "x-warden-ratelimit"
	// MetadataStoreUnavailable is the key of the RateLimitResponse's dynamic_metadata (Envoy
	// stores it under envoy.filters.http.ratelimit) when any descriptor was decided by the
	// failure policy (fail_open, local or fail_closed): true. Log it with
	// %DYNAMIC_METADATA(envoy.filters.http.ratelimit:warden_store_unavailable)%.
	MetadataStoreUnavailable = "warden_store_unavailable"
)

// markUnavailable marks out, Envoy's answer to r, when the store could not be asked for some
// descriptor: dynamic metadata always (beside envoyproxy/ratelimit's, when that is on), and
// when such a descriptor makes the answer OVER_LIMIT the store-unavailable header and
// Retry-After (Warden's headers carry Retry-After already when response_headers is on). A
// counted answer is left as it is.
func markUnavailable(out *rlsv3.RateLimitResponse, r *wardenv1.CheckRateLimitResponse, headers bool) {
	refused, any := false, false
	for _, st := range r.GetStatuses() {
		if st.GetStoreUnavailable() {
			any = true
			refused = refused || (st.GetCode() == wardenv1.RateLimitCode_RATE_LIMIT_CODE_OVER_LIMIT && !st.GetShadow())
		}
	}
	if !any {
		return
	}
	if out.DynamicMetadata == nil {
		out.DynamicMetadata = &structpb.Struct{Fields: make(map[string]*structpb.Value, 1)}
	}
	out.DynamicMetadata.Fields[MetadataStoreUnavailable] = structpb.NewBoolValue(true)
	if !refused || out.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		return // e.g. shadow_mode, or quota_mode with a quota left
	}
	out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd, &corev3.HeaderValue{Key: HeaderStoreUnavailable, Value: "store-unavailable"})
	if !headers {
		for _, h := range r.GetHeaders() {
			if h.GetName() == "Retry-After" {
				out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd, &corev3.HeaderValue{Key: h.GetName(), Value: h.GetValue()})
			}
		}
	}
}
