package jwtauth

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/wardenhq/warden/authn"
)

// principal validates the registered claims of a token whose signature verified, and maps
// its claims to a Principal.
func (is *issuer) principal(c map[string]any, now time.Time) (authn.Principal, *failure) {
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return authn.Principal{}, fail(authn.Malformed, "exp: %v", err)
	case !ok:
		return authn.Principal{}, fail(authn.Malformed, "exp is required")
	case !now.Before(exp.Add(is.leeway)):
		return authn.Principal{}, fail(authn.Expired, "expired at %v", exp)
	}
	for _, name := range [...]string{"nbf", "iat"} { // an iat in the future is refused too
		at, ok, err := numericDate(c, name)
		switch {
		case err != nil:
			return authn.Principal{}, fail(authn.Malformed, "%s: %v", name, err)
		case ok && now.Add(is.leeway).Before(at):
			return authn.Principal{}, fail(authn.NotYetValid, "%s %v is in the future", name, at)
		}
	}
	if f := is.checkAudience(c["aud"]); f != nil {
		return authn.Principal{}, f
	}
	for _, path := range is.required {
		if v, ok := lookup(c, path); !ok || v == nil {
			return authn.Principal{}, fail(authn.Malformed, "required claim %q missing", path)
		}
	}
	p := authn.Principal{Method: authn.MethodJWT, ExpiresAt: exp}
	if v, ok := c["jti"]; ok {
		if p.CredentialID, ok = v.(string); !ok {
			return authn.Principal{}, fail(authn.Malformed, "jti is not a string")
		}
	}
	if p.Subject, ok = stringClaim(c, is.claims.Subject); !ok || p.Subject == "" {
		return authn.Principal{}, fail(authn.Malformed, "subject claim %q missing or not a string", is.claims.Subject)
	}
	for _, m := range []struct {
		path string
		dst  *string
	}{{is.claims.Tenant, &p.Tenant}, {is.claims.Tier, &p.Tier}} {
		if m.path == "" {
			continue
		}
		if v, present := lookup(c, m.path); present {
			if *m.dst, ok = v.(string); !ok {
				return authn.Principal{}, fail(authn.Malformed, "claim %q is not a string", m.path)
			}
		}
	}
	if is.claims.Roles != "" {
		if v, present := lookup(c, is.claims.Roles); present {
			if p.Roles, ok = stringList(v); !ok {
				return authn.Principal{}, fail(authn.Malformed, "roles claim %q is not a string list", is.claims.Roles)
			}
		}
	}
	if p.Scopes, ok = is.scopes(c); !ok {
		return authn.Principal{}, fail(authn.Malformed, "scope claim is neither a string nor (scp, or a configured path) an array of strings")
	}
	for _, path := range is.claims.Copy {
		v, present := lookup(c, path)
		if !present {
			continue
		}
		if s, ok := scalarText(v); ok {
			if p.Claims == nil {
				p.Claims = make(map[string]string, len(is.claims.Copy))
			}
			p.Claims[path] = s
		}
	}
	return p, nil
}

func (is *issuer) checkAudience(v any) *failure {
	switch aud := v.(type) {
	case string:
		if slices.Contains(is.audiences, aud) {
			return nil
		}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return fail(authn.Malformed, "aud holds a non-string")
			}
			if slices.Contains(is.audiences, s) {
				return nil
			}
		}
	case nil:
		return fail(authn.WrongAudience, "aud missing")
	default:
		return fail(authn.Malformed, "aud is neither a string nor an array")
	}
	return fail(authn.WrongAudience, "aud does not name this service")
}

// numericDate reads an RFC 7519 NumericDate: a JSON number of seconds, possibly fractional.
func numericDate(c map[string]any, name string) (time.Time, bool, error) {
	v, ok := c[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, true, errNotNumber
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, true, errNotNumber
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

type claimError string

func (e claimError) Error() string { return string(e) }

const errNotNumber = claimError("not a valid NumericDate")

// lookup resolves a claim path: the exact top-level name first, then dot-separated members.
func lookup(c map[string]any, path string) (any, bool) {
	if v, ok := c[path]; ok {
		return v, true
	}
	var cur any = c
	for path != "" {
		var part string
		part, path, _ = strings.Cut(path, ".")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func stringClaim(c map[string]any, path string) (string, bool) {
	v, ok := lookup(c, path)
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// scopes reads the principal's scopes: the configured path (a string or an array of
// strings), or by default "scope", which RFC 8693 §4.2 and RFC 9068 §2.2.3 define as a
// space-separated string (an array there is refused), else "scp" (an array, or a string as
// some issuers send it). No scope claim gives nil: not narrowed.
func (is *issuer) scopes(c map[string]any) ([]string, bool) {
	if is.claims.Scopes != "" {
		v, present := lookup(c, is.claims.Scopes)
		if !present {
			return nil, true
		}
		return stringList(v)
	}
	if v, present := c["scope"]; present {
		s, ok := v.(string)
		if !ok {
			return nil, false
		}
		return splitSpaces(s), true
	}
	if v, present := c["scp"]; present {
		return stringList(v)
	}
	return nil, true
}

// stringList reads an array of strings or a string of values separated by U+0020. An empty
// string or array gives an empty, non-nil list.
func stringList(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return splitSpaces(v), true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// splitSpaces splits a scope or role string as authn.SplitScopes does: on U+0020 only.
func splitSpaces(s string) []string { return authn.SplitScopes(s) }

func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case json.Number:
		return string(v), true
	case bool:
		return strconv.FormatBool(v), true
	case []any:
		l, ok := stringList(v)
		return strings.Join(l, " "), ok
	}
	return "", false
}
