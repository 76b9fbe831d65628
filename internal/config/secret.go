package config

import (
	"fmt"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Secret is a value that must not be written inline in the file: it is a reference,
// ${ENV_VAR} or file:/path/to/file, resolved at load. Its String and GoString hide the value
// so that it cannot reach a log by accident; Reveal returns it.
type Secret struct {
	ref   string
	line  int
	value string
}

// UnmarshalYAML records the reference and its line; Load resolves it.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a secret must be a string: ${ENV_VAR} or file:/path", n.Line)}}
	}
	s.ref, s.line = n.Value, n.Line
	return nil
}

// IsZero reports whether no secret was given.
func (s Secret) IsZero() bool { return s.ref == "" && s.value == "" }

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return s.value }

// String hides the value.
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return s.String() }

// SecretValue builds a resolved Secret, for code and tests that configure Warden in Go.
func SecretValue(v string) Secret { return Secret{value: v} }

func (s *Secret) resolve(file, field string, env Env) error {
	if s.ref == "" {
		return nil
	}
	bad := func(format string, args ...any) error {
		return errAt(file, s.line, field, fmt.Sprintf(format, args...))
	}
	switch {
	case strings.HasPrefix(s.ref, "${") && strings.HasSuffix(s.ref, "}"):
		name := s.ref[2 : len(s.ref)-1]
		if name == "" {
			return bad("empty environment variable name")
		}
		v, ok := env(name)
		if !ok {
			return bad("environment variable %s is not set", name)
		}
		if v == "" {
			return bad("environment variable %s is empty", name)
		}
		s.value = v
	case strings.HasPrefix(s.ref, "file:"):
		p := strings.TrimPrefix(s.ref, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			return bad("secret file: %v", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return bad("secret file %s is empty", p)
		}
		s.value = v
	default:
		return bad("secrets are never written inline: use ${ENV_VAR} or file:/path")
	}
	return nil
}

var secretType = reflect.TypeOf(Secret{})

// resolveSecrets walks v (structs, pointers, slices, maps of them) and resolves every Secret,
// naming fields by their yaml paths.
func resolveSecrets(file string, v reflect.Value, path string, env Env) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return resolveSecrets(file, v.Elem(), path, env)
	case reflect.Struct:
		if v.Type() == secretType {
			if !v.CanAddr() {
				return nil
			}
			return v.Addr().Interface().(*Secret).resolve(file, path, env)
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, inline := yamlName(f)
			if name == "-" {
				continue
			}
			p := path
			if !inline {
				p = joinPath(path, name)
			}
			if err := resolveSecrets(file, v.Field(i), p, env); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if err := resolveSecrets(file, v.Index(i), fmt.Sprintf("%s[%d]", path, i), env); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.Type().Elem().Kind() != reflect.Struct && v.Type().Elem().Kind() != reflect.Pointer {
			return nil
		}
		iter := v.MapRange()
		for iter.Next() {
			// Map values are not addressable: copy, resolve, store back.
			cp := reflect.New(v.Type().Elem()).Elem()
			cp.Set(iter.Value())
			if err := resolveSecrets(file, cp, joinPath(path, fmt.Sprint(iter.Key().Interface())), env); err != nil {
				return err
			}
			v.SetMapIndex(iter.Key(), cp)
		}
	}
	return nil
}

func yamlName(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	parts := strings.Split(tag, ",")
	for _, o := range parts[1:] {
		if o == "inline" {
			inline = true
		}
	}
	name = parts[0]
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, inline
}

func joinPath(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkKnown reports the first mapping key in n that has no field in t, with its line. yaml's
// own strict mode works only on whole documents; sections are nodes, so this walks them.
func checkKnown(file string, n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return checkKnown(file, n.Alias, t, path)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // a type error that Decode reports
		}
		fields := map[string]reflect.Type{}
		collectFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			ft, ok := fields[k.Value]
			if !ok {
				return errAt(file, k.Line, path, fmt.Sprintf("unknown field %q", k.Value))
			}
			if err := checkKnown(file, n.Content[i+1], ft, joinPath(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, c := range n.Content {
			if err := checkKnown(file, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKnown(file, n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

func collectFields(t reflect.Type, into map[string]reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, inline := yamlName(f)
		if name == "-" {
			continue
		}
		if inline && f.Type.Kind() == reflect.Struct {
			collectFields(f.Type, into)
			continue
		}
		into[name] = f.Type
	}
}
