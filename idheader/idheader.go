// Package idheader names the identity headers: the request headers through which Warden tells
// an upstream who called (x-warden-subject, x-warden-tenant, …). It is the one definition the
// server (service), the Go middleware and interceptors (clients) and the Envoy adapter
// (clients/envoy) share, so that what one side sets the other side strips. It imports
// only fielderr (its config errors), and knows nothing of how a header is carried (HTTP, gRPC metadata, Envoy).
//
// Every name under Prefix is Warden's alone: a request's own copies of them, in any case and
// however repeated, are removed before its handler runs, whether Warden allowed it, a cache
// answered, or Warden could not be asked and the caller failed open. That includes names
// Warden does not set today (x-warden-impersonate), so that a name added later is never
// spoofable in the meantime.
//
// A deployment may name the headers as its upstreams expect (x-user-id, x-auth-*): a Set,
// built by New from a Config, carries those names and their reserved prefix, and Default is
// the Set of the names above. The server (service.HeaderNames) and the Envoy adapter
// (envoy.AuthConfig.Identity) take a Set; the Go middleware and interceptors use Default
// until they are given one.
package idheader

import (
	"errors"
	"strings"

	"github.com/wardenhq/warden/fielderr"
)

// Prefix starts every identity header's name. Names are lower case, as HTTP/2, gRPC metadata
// and Envoy carry them.
const Prefix = "x-warden-"

// The headers Warden sets on an allowed request. An empty value is sent as a removal.
const (
	Subject      = Prefix + "subject"
	Tenant       = Prefix + "tenant"
	Roles        = Prefix + "roles"  // comma-separated
	Scopes       = Prefix + "scopes" // space-separated (RFC 6749 §3.3)
	Method       = Prefix + "auth-method"
	CredentialID = Prefix + "credential-id"
	Tier         = Prefix + "tier"
)

// Count is how many headers Warden sets: the length of Names.
const Count = 7

// Names returns the headers Warden sets, in the order above.
func Names() [Count]string {
	return [Count]string{Subject, Tenant, Roles, Scopes, Method, CredentialID, Tier}
}

// Reserved reports whether name, in any case, is an identity header's: whether it starts
// with Prefix. A request's own headers of such a name are never passed on.
func Reserved(name string) bool {
	return len(name) >= len(Prefix) && strings.EqualFold(name[:len(Prefix)], Prefix)
}

// Set is a deployment's identity header names: the defaults above (Default), or names a
// deployment configured (New). A Set is a small immutable value, safe to copy and to share.
// The zero Set is not usable: build one with Default or New.
type Set struct {
	prefix string
	names  [Count]string
}

// Config names the identity headers of a deployment. Every field is optional.
type Config struct {
	// Prefix reserves every request header whose name starts with it (see Reserved).
	// Default Prefix ("x-warden-"). A name left empty below is Prefix + its default suffix
	// (subject, tenant, roles, scopes, auth-method, credential-id, tier).
	Prefix string `yaml:"prefix"`
	// The names of the headers, in any case (they are lower-cased). A name outside Prefix
	// is reserved too.
	Subject      string `yaml:"subject"`
	Tenant       string `yaml:"tenant"`
	Roles        string `yaml:"roles"`
	Scopes       string `yaml:"scopes"`
	Method       string `yaml:"auth_method"`
	CredentialID string `yaml:"credential_id"`
	Tier         string `yaml:"tier"`
}

// Default returns the Set of the default names (Names).
func Default() Set { return Set{prefix: Prefix, names: Names()} }

// suffixes are the default names without Prefix, in the order of Names.
var suffixes = [Count]string{"subject", "tenant", "roles", "scopes", "auth-method", "credential-id", "tier"}

// New checks c and returns its Set: names must be HTTP header names (RFC 9110 tokens), not
// pseudo-headers, and distinct; the prefix must not be empty once defaulted.
func New(c Config) (Set, error) {
	s := Set{prefix: strings.ToLower(c.Prefix)}
	if s.prefix == "" {
		s.prefix = Prefix
	}
	if !validName(s.prefix) {
		return Set{}, fielderr.New("prefix", errors.New("want the start of an HTTP header name (letters, digits, -)"))
	}
	given := [Count]string{c.Subject, c.Tenant, c.Roles, c.Scopes, c.Method, c.CredentialID, c.Tier}
	for i, n := range given {
		if n == "" {
			n = s.prefix + suffixes[i]
		}
		n = strings.ToLower(n)
		if !validName(n) {
			return Set{}, fielderr.New(fields[i], errors.New("want an HTTP header name (letters, digits, -)"))
		}
		for j := 0; j < i; j++ {
			if s.names[j] == n {
				return Set{}, fielderr.New(fields[i], errors.New("the same name as "+fields[j]))
			}
		}
		s.names[i] = n
	}
	return s, nil
}

// fields are the Config fields' names in configuration files, in the order of Names.
var fields = [Count]string{"subject", "tenant", "roles", "scopes", "auth_method", "credential_id", "tier"}

// validName reports whether n is a lower-case header name made of letters, digits and "-"
// (a conservative subset of RFC 9110 tokens that every gateway and gRPC metadata accept).
func validName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Names returns the set's names, in the order of the package's Names.
func (s Set) Names() [Count]string { return s.names }

// Subject … Tier return one name each.
func (s Set) Subject() string      { return s.names[0] }
func (s Set) Tenant() string       { return s.names[1] }
func (s Set) Roles() string        { return s.names[2] }
func (s Set) Scopes() string       { return s.names[3] }
func (s Set) Method() string       { return s.names[4] }
func (s Set) CredentialID() string { return s.names[5] }
func (s Set) Tier() string         { return s.names[6] }

// Prefix returns the reserved prefix.
func (s Set) Prefix() string { return s.prefix }

// IsZero reports whether s was not built (the zero Set): callers use Default then.
func (s Set) IsZero() bool { return s.prefix == "" }

// Reserved reports whether name, in any case, is the set's: under its prefix, or one of its
// names. A request's own headers of such a name are never passed on.
func (s Set) Reserved(name string) bool {
	if len(name) >= len(s.prefix) && strings.EqualFold(name[:len(s.prefix)], s.prefix) {
		return true
	}
	return s.IsName(name)
}

// IsName reports whether name, in any case, is one of the set's names.
func (s Set) IsName(name string) bool {
	// It runs for every header of every request, most of them no name of the set: the
	// names being ASCII (New), an ASCII name of another length is none of them, and only a
	// non-ASCII one (the Kelvin sign folds to k) needs EqualFold whatever the lengths.
	ascii := isASCII(name)
	for _, n := range s.names {
		if ascii && len(n) != len(name) {
			continue
		}
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
