// Package fielderr is the one error type for configuration mistakes: the path of the field
// in the configuration ("domains[0].descriptors[2].rate_limit.unit") and its cause, and, once
// a loader that holds the file has positioned it, the file and the line.
//
// Capability packages (limiter, authn, authz, webhook) validate their own Config and return
// *Error values, or a List of them when they report several mistakes at once, with paths
// relative to their Config as its yaml tags spell them. internal/config adds the section's
// name and the line; cmd/warden reports the result as is. The model is go/scanner's Error
// and ErrorList.
//
// The package knows nothing of YAML or of files: it is a leaf that every package may import.
package fielderr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Error is one mistake at a field path.
type Error struct {
	// File and Line position the field (1-based line; 0 when unknown). They are empty until
	// a loader that read the file sets them.
	File string
	Line int
	// Path is the field's path in the configuration, dotted, with [i] for list items and
	// map keys as path elements ("authz.roles.support.permissions[1]"); "" for the whole
	// configuration.
	Path string
	// Err is the cause. Its text never contains a secret.
	Err error
}

// New returns an *Error at path.
func New(path string, err error) *Error { return &Error{Path: path, Err: err} }

// Errorf returns an *Error at path with a formatted cause.
func Errorf(path, format string, args ...any) *Error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// Error returns "file:line: path: cause", leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg())
	return b.String()
}

// Msg is the cause's text.
func (e *Error) Msg() string {
	if e.Err == nil {
		return "invalid"
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// List is several mistakes, reported together (one a line).
type List []*Error

// Add appends an *Error at path.
func (l *List) Add(path string, err error) { *l = append(*l, New(path, err)) }

// Addf appends an *Error at path with a formatted cause.
func (l *List) Addf(path, format string, args ...any) { *l = append(*l, Errorf(path, format, args...)) }

// Error returns the mistakes one a line.
func (l List) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the mistakes, for errors.As.
func (l List) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

// Err returns nil for an empty list and the list otherwise.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Prefix puts prefix before the path of every mistake in err: an *Error's path, each one
// of a List (or of errors joined with errors.Join), and an error of another type becomes an
// *Error at prefix. A path starting with "[" is joined without a dot.
func Prefix(prefix string, err error) error {
	if err == nil || prefix == "" {
		return err
	}
	l := Flatten(err)
	for i, e := range l {
		c := *e
		c.Path = join(prefix, c.Path)
		l[i] = &c
	}
	if len(l) == 1 {
		return l[0]
	}
	return l
}

// Flatten returns the mistakes in err, in order: the *Errors of a List or of joined errors
// (nested ones too), and any other error as an *Error with no path.
func Flatten(err error) List {
	var out List
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *Error:
			out = append(out, e)
		case List:
			out = append(out, e...)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		default:
			var fe *Error
			if errors.As(err, &fe) {
				out = append(out, fe)
				return
			}
			out = append(out, &Error{Err: err})
		}
	}
	walk(err)
	return out
}

func join(prefix, path string) string {
	switch {
	case path == "":
		return prefix
	case strings.HasPrefix(path, "["):
		return prefix + path
	}
	return prefix + "." + path
}
