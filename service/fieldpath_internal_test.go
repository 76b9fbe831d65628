package service

import (
	"errors"
	"testing"

	"github.com/wardenhq/warden/limiter"
)

// TestRequestField: Check puts a route's descriptors before the caller's
// rate_limit_descriptors; the limiter's paths count both, the caller's name only its own.
func TestRequestField(t *testing.T) {
	sc := &rlScratch{prefix: "rate_limit_", nExtra: 2}
	for in, want := range map[string]string{
		"descriptors[2].cost":    "rate_limit_descriptors[0].cost",
		"descriptors[3].entries": "rate_limit_descriptors[1].entries",
		"descriptors[1].limit":   "descriptors[1].limit", // the route's own: not the caller's field
		"cost":                   "cost",
	} {
		var re *limiter.RequestError
		if !errors.As(sc.requestField(&limiter.RequestError{Field: in, Reason: "r"}), &re) || re.Field != want {
			t.Errorf("%s: got %v, want %s", in, re, want)
		}
	}
	other := errors.New("x")
	if sc.requestField(other) != other {
		t.Error("a non-request error was rewritten")
	}
}
