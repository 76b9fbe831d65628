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
	if p == "*" {
		return nil
	}
	i := strings.IndexByte(p, ':')
	if i < 0 {
		return fmt.Errorf("%q is not resource:verb, resource:*, *:verb or *", p)
	}
	res, verb := p[:i], p[i+1:]
	if (res != "*" && !validName(res)) || (verb != "*" && !validName(verb)) {
		return fmt.Errorf("%q: resource and verb must be * or 1-64 characters of [A-Za-z0-9_.-]", p)
	}
	return nil
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

// anyCovers reports whether one of the patterns covers the action.
func anyCovers(ps []string, action, resource, verb string) bool {
	for _, p := range ps {
		if covers(p, action, resource, verb) {
			return true
		}
	}
	return false
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
