package limiter

import (
	"errors"
	"strings"
)

// ErrUnavailable is returned (wrapped) by Limiter.Check when the store could not decide and
// the domain's failure policy is FailClosed, or its circuit breaker is open. The service maps
// it to codes.Unavailable.
var ErrUnavailable = errors.New("limiter: store unavailable")

// ConfigError is a configuration error at a field path, such as
// "domains[0].descriptors[2].rate_limit.unit". Path uses the YAML names of
// envoyproxy/ratelimit's format, so a loader can map it back to a line of the file.
type ConfigError struct {
	Path string
	Err  error
}

func (e *ConfigError) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// at prefixes err's path with prefix: a *ConfigError's path is extended, any other error
// gets one.
func at(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		path := prefix
		if ce.Path != "" {
			if strings.HasPrefix(ce.Path, "[") {
				path += ce.Path
			} else {
				path += "." + ce.Path
			}
		}
		return &ConfigError{Path: path, Err: ce.Err}
	}
	return &ConfigError{Path: prefix, Err: err}
}
