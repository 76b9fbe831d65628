package authz

import "fmt"

// ScopeRequirement requires plain OAuth 2.0 scopes (RFC 6749 §3.3): opaque strings compared
// exactly and case-sensitively (`Read` is not `read`), with no meaning of their own. It is
// independent of roles and permissions: a scope `read` grants nothing, and a requirement
// never looks inside a scope for `resource:verb` or wildcards.
//
// The credential must hold every scope of AllOf and, when AnyOf is not empty, at least one
// of AnyOf. The zero value requires nothing. A credential without scopes holds none, so it
// fails any non-empty requirement (unlike the narrowing by `resource:verb` scopes, which
// applies only to credentials that have such scopes).
type ScopeRequirement struct {
	AnyOf []string `yaml:"any_of"`
	AllOf []string `yaml:"all_of"`
}

// MaxRequiredScopes is the most scopes AnyOf or AllOf may list.
const MaxRequiredScopes = 64

// IsZero reports whether the requirement requires nothing.
func (s ScopeRequirement) IsZero() bool { return len(s.AnyOf) == 0 && len(s.AllOf) == 0 }

// SatisfiedBy reports whether a credential holding scopes meets the requirement. It does not
// allocate.
func (s ScopeRequirement) SatisfiedBy(scopes []string) bool {
	for _, want := range s.AllOf {
		if !hasScope(scopes, want) {
			return false
		}
	}
	if len(s.AnyOf) == 0 {
		return true
	}
	for _, want := range s.AnyOf {
		if hasScope(scopes, want) {
			return true
		}
	}
	return false
}

func hasScope(scopes []string, want string) bool {
	for _, have := range scopes {
		if have == want {
			return true
		}
	}
	return false
}

// Check validates the requirement: at most MaxRequiredScopes scopes in each list, each a
// scope-token of RFC 6749 §3.3. The error names the list and index (`any_of[2]`).
func (s ScopeRequirement) Check() error {
	var err error
	s.problems(func(field, msg string) {
		if err == nil {
			err = fmt.Errorf("%s: %s", field, msg)
		}
	})
	return err
}

// problems calls report for each problem Check describes.
func (s ScopeRequirement) problems(report func(field, msg string)) {
	for _, l := range [...]struct {
		name   string
		scopes []string
	}{{"any_of", s.AnyOf}, {"all_of", s.AllOf}} {
		if len(l.scopes) > MaxRequiredScopes {
			report(l.name, fmt.Sprintf("more than %d scopes", MaxRequiredScopes))
			continue
		}
		for i, sc := range l.scopes {
			if !ValidScope(sc) {
				report(idx(l.name, i), fmt.Sprintf("%q is not a scope (RFC 6749: 1 to 256 printable ASCII characters except space, \" and \\)", sc))
			}
		}
	}
}

// ValidScope reports whether s is a scope-token of RFC 6749 §3.3:
// 1*( %x21 / %x23-5B / %x5D-7E ), at most 256 bytes.
func ValidScope(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
