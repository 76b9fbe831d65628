package limiter

import (
	"errors"

	"github.com/wardenhq/warden/fielderr"
)

// ErrUnavailable is returned (wrapped) by Limiter.Check when the store could not decide and
// the domain's failure policy is FailClosed, or its circuit breaker is open. The service maps
// it to codes.Unavailable.
var ErrUnavailable = errors.New("limiter: store unavailable")

// at prefixes err's path with prefix: a *fielderr.Error's path is extended, any other error
// gets one.
func at(prefix string, err error) error { return fielderr.Prefix(prefix, err) }
