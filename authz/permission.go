package authz

import (
	"fmt"
	"strings"
)

// A permission is `resource:verb`, where either part may be `*`, or `*` alone for everything.
// An action (what a request asks to do) has the same form without wildcards.

// validName reports whether s is a resource or verb name: 1–64 bytes of [A-Za-z0-9_.-].
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '-':
		default:
			return false
		}
	}
	return true
}

// splitAction splits a concrete action `resource:verb`. ok is false when it is malformed or
// holds a wildcard. It does not allocate.
func splitAction(action string) (resource, verb string, ok bool) {
	i := strings.IndexByte(action, ':')
	if i < 0 {
		return "", "", false
	}
	resource, verb = action[:i], action[i+1:]
	return resource, verb, validName(resource) && validName(verb)
}

// checkPermission validates a permission pattern.
func checkPermission(p string) error {
	if isPermission(p) {
		return nil
	}
	if strings.IndexByte(p, ':') < 0 {
		return fmt.Errorf("%q is not resource:verb, resource:*, *:verb or *", p)
	}
	return fmt.Errorf("%q: resource and verb must be * or 1-64 characters of [A-Za-z0-9_.-]", p)
}

// isPermission reports whether p is a permission pattern: `resource:verb`, `resource:*`,
// `*:verb` or `*`. It does not allocate.
func isPermission(p string) bool {
	if p == "*" {
		return true
	}
	i := strings.IndexByte(p, ':')
	if i < 0 {
		return false
	}
	res, verb := p[:i], p[i+1:]
	return (res == "*" || validName(res)) && (verb == "*" || validName(verb))
}

// covers reports whether permission pattern p covers the action resource:verb. It does not
// allocate. Patterns that are not permissions (e.g. OAuth scopes like "openid") cover nothing
// but themselves.
func covers(p, action, resource, verb string) bool {
	if p == action || p == "*" || p == "*:*" {
		return true
	}
	n := len(p)
	if n >= 2 && p[n-2] == ':' && p[n-1] == '*' {
		return p[:n-2] == resource
	}
	if n >= 2 && p[0] == '*' && p[1] == ':' {
		return p[2:] == verb
	}
	return false
}

// narrowedOut reports whether a credential's scopes leave the action out. Only scopes that
// are permissions (`resource:verb`, `resource:*`, `*:verb`, `*`) narrow: plain OAuth 2.0
// scopes (`openid`, `read`) are for ScopeRequirement and narrow nothing, so a credential whose
// scopes are all plain is limited by its roles alone. Nil scopes do not narrow; an empty,
// non-nil list (an OAuth 2.0 token without scope) narrows to nothing.
func narrowedOut(scopes []string, action, resource, verb string) bool {
	if scopes == nil {
		return false
	}
	narrowed := len(scopes) == 0
	for _, s := range scopes {
		if !isPermission(s) {
			continue
		}
		if covers(s, action, resource, verb) {
			return false
		}
		narrowed = true
	}
	return narrowed
}

// permSet is a compiled set of permission patterns: lookups are map reads, no allocation.
type permSet struct {
	all       bool
	exact     map[string]struct{} // resource:verb
	resources map[string]struct{} // resource:*
	verbs     map[string]struct{} // *:verb
}

func (s *permSet) add(p string) {
	switch {
	case p == "*" || p == "*:*":
		s.all = true
	case strings.HasSuffix(p, ":*"):
		addTo(&s.resources, p[:len(p)-2])
	case strings.HasPrefix(p, "*:"):
		addTo(&s.verbs, p[2:])
	default:
		addTo(&s.exact, p)
	}
}

func (s *permSet) merge(o *permSet) {
	s.all = s.all || o.all
	for k := range o.exact {
		addTo(&s.exact, k)
	}
	for k := range o.resources {
		addTo(&s.resources, k)
	}
	for k := range o.verbs {
		addTo(&s.verbs, k)
	}
}

func (s *permSet) covers(action, resource, verb string) bool {
	if s.all {
		return true
	}
	if _, ok := s.exact[action]; ok {
		return true
	}
	if _, ok := s.resources[resource]; ok {
		return true
	}
	_, ok := s.verbs[verb]
	return ok
}

func addTo(m *map[string]struct{}, k string) {
	if *m == nil {
		*m = make(map[string]struct{})
	}
	(*m)[k] = struct{}{}
}
