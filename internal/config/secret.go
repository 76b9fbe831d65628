package config

import (
	"encoding"
	"errors"
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
	v, err := resolveRef(s.ref, env)
	if err != nil {
		return errAt(file, s.line, field, err.Error())
	}
	s.value = v
	return nil
}

// resolveRef returns the value of a secret reference: ${ENV_VAR} or file:/path.
func resolveRef(ref string, env Env) (string, error) {
	switch {
	case strings.HasPrefix(ref, "${") && strings.HasSuffix(ref, "}"):
		name := ref[2 : len(ref)-1]
		if name == "" {
			return "", errors.New("empty environment variable name")
		}
		v, ok := env(name)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		if v == "" {
			return "", fmt.Errorf("environment variable %s is empty", name)
		}
		return v, nil
	case strings.HasPrefix(ref, "file:"):
		p := strings.TrimPrefix(ref, "file:")
		b, err := os.ReadFile(p)
		if err != nil {
			return "", fmt.Errorf("secret file: %v", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", p)
		}
		return v, nil
	}
	return "", errors.New("secrets are never written inline: use ${ENV_VAR} or file:/path")
}

// isSecret reports whether a capability's Config field holds a secret reference: a string
// or []string field tagged config:"secret" (the capability packages do not import this
// one, so they cannot use Secret).
func isSecret(f reflect.StructField) bool {
	return f.Tag.Get("config") == "secret" &&
		(f.Type.Kind() == reflect.String || f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.String)
}

// resolveTagged resolves the reference(s) in a config:"secret" field in place.
func resolveTagged(file string, v reflect.Value, path string, env Env, line func(string) int) error {
	one := func(v reflect.Value, path string) error {
		if v.String() == "" {
			return nil
		}
		val, err := resolveRef(v.String(), env)
		if err != nil {
			return errAt(file, line(path), path, err.Error())
		}
		v.SetString(val)
		return nil
	}
	if v.Kind() == reflect.String {
		return one(v, path)
	}
	for i := 0; i < v.Len(); i++ {
		if err := one(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
			return err
		}
	}
	return nil
}

var secretType = reflect.TypeOf(Secret{})

// resolveSecrets walks v (structs, pointers, slices, maps of them) and resolves every Secret,
// naming fields by their yaml paths.
func resolveSecrets(file string, v reflect.Value, path string, env Env, line func(string) int) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return resolveSecrets(file, v.Elem(), path, env, line)
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
			if isSecret(f) {
				if err := resolveTagged(file, v.Field(i), p, env, line); err != nil {
					return err
				}
				continue
			}
			if err := resolveSecrets(file, v.Field(i), p, env, line); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			if err := resolveSecrets(file, v.Index(i), fmt.Sprintf("%s[%d]", path, i), env, line); err != nil {
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
			if err := resolveSecrets(file, cp, joinPath(path, fmt.Sprint(iter.Key().Interface())), env, line); err != nil {
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

var (
	unmarshalerType     = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// checkKnown reports the first mapping key in n that has no field in t, with its line. yaml's
// own strict mode works only on whole documents; sections are nodes, so this walks them.
func checkKnown(file string, n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n == nil || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	if n.Kind == yaml.ScalarNode && reflect.PointerTo(t).Implements(textUnmarshalerType) && n.Tag != "!!null" {
		// yaml reports a TextUnmarshaler's error without its line: check it here, where the
		// line and the path are known.
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			return errAt(file, n.Line, path, err.Error())
		}
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
