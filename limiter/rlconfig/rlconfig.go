// Package rlconfig reads envoyproxy/ratelimit's YAML configuration files as they are and
// converts them into limiter.Domain values, so that a team migrating from envoyproxy/ratelimit
// points Warden at its existing files and nothing else changes.
//
// The format is envoyproxy/ratelimit's (its README, "The configuration format", and its loader
// src/config/config_impl.go): one domain per file, a tree of descriptors with key, optional
// value (a "*" anywhere in it is a wildcard), rate_limit {unit, requests_per_unit, unlimited,
// name, replaces: [{name}]}, shadow_mode, quota_mode, detailed_metric, value_to_metric,
// share_threshold, metadata and nested descriptors. Keys outside that format, or in the wrong
// place, are errors, except these optional Warden extensions, which unmodified files never
// contain:
//
//	domain:         failure_policy (fail_open | fail_closed | local), hash_tag_key,
//	                all_or_nothing (true: a refused request consumes nothing, Warden's
//	                counting, instead of envoyproxy/ratelimit's count-every-hit)
//	rate_limit:     algorithm (token_bucket | sliding_window | fixed_window | sliding_log),
//	                period (any Go duration, e.g. 30s, instead of unit), burst,
//	                tiers: {NAME: {unlimited, unit, requests_per_unit, period, burst}}
//
// Limits read from these files count in fixed windows (envoyproxy/ratelimit's semantics) unless
// they name another algorithm. Units are second, minute, hour, day, week, and, as
// envoyproxy/ratelimit's proto allows, month (30 days) and year (365 days).
//
// Errors are *fielderr.Error values naming the file, the line and the field. The package knows nothing
// of gRPC, Envoy's protos or how Warden is configured: it turns bytes into plain values.
//
//	domains, err := rlconfig.Load("/srv/runtime_data/current/ratelimit/config")
//	if err != nil {
//		return err // e.g. "config/api.yaml:12: descriptors[0].rate_limit.unit: invalid rate limit unit "minutes""
//	}
//	err = lim.SetDomains(domains)
package rlconfig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/limiter"

	"github.com/wardenhq/warden/fielderr"
)

// MaxFileSize bounds one config file; larger files are refused rather than read.
const MaxFileSize = 16 << 20

// Options changes how Load reads a directory. The zero value is envoyproxy/ratelimit's
// default.
type Options struct {
	// MergeDomains merges files that define the same domain, as envoyproxy/ratelimit does with
	// MERGE_DOMAIN_CONFIG=true: the later file's top-level descriptors are added to the
	// domain's, and a top-level descriptor (key and value) defined in both is an error. Default
	// false: a domain defined twice is an error.
	MergeDomains bool
}

// Load reads path: one YAML file, or a directory whose *.yaml and *.yml files (not those of
// its subdirectories, not dotfiles) are each one domain, as envoyproxy/ratelimit loads its
// runtime directory. Files are read in name order; a domain defined twice is an error naming
// both files. Symbolic links are followed, so a Kubernetes ConfigMap mount works.
func Load(path string) ([]limiter.Domain, error) {
	return LoadOptions(path, Options{})
}

// LoadOptions is Load with options.
func LoadOptions(path string, o Options) ([]limiter.Domain, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &fielderr.Error{File: path, Err: err}
	}
	var files []string
	if fi.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, &fielderr.Error{File: path, Err: err}
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue
			}
			p := filepath.Join(path, name)
			if st, err := os.Stat(p); err != nil || st.IsDir() {
				continue // a dangling link or a directory named *.yaml
			}
			files = append(files, p)
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	domains := make([]limiter.Domain, 0, len(files))
	seen := map[string]string{}
	index := map[string]int{}
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, err
		}
		d, err := Parse(f, data)
		if err != nil {
			return nil, err
		}
		if prev, dup := seen[d.Name]; dup {
			if !o.MergeDomains {
				return nil, &fielderr.Error{File: f, Line: domainLine(data), Path: "domain",
					Err: fmt.Errorf("duplicate domain %q (also in %s)", d.Name, prev)}
			}
			if err := merge(&domains[index[d.Name]], d, f, prev, data); err != nil {
				return nil, err
			}
			continue
		}
		seen[d.Name], index[d.Name] = f, len(domains)
		domains = append(domains, d)
	}
	return domains, nil
}

// merge adds the top-level descriptors of d (read from file, whose bytes are data) to into
// (first read from prev).
func merge(into *limiter.Domain, d limiter.Domain, file, prev string, data []byte) error {
	if (d.FailurePolicy != into.FailurePolicy && d.FailurePolicy != limiter.FailOpen) ||
		(d.HashTagKey != into.HashTagKey && d.HashTagKey != "") || d.CountRefused != into.CountRefused {
		return &fielderr.Error{File: file, Line: domainLine(data), Path: "domain",
			Err: fmt.Errorf("domain %q: failure_policy, hash_tag_key or all_or_nothing differs from %s", d.Name, prev)}
	}
	for i, nd := range d.Descriptors {
		for _, od := range into.Descriptors {
			if od.Key == nd.Key && od.Value == nd.Value {
				var root yaml.Node
				_ = yaml.Unmarshal(data, &root)
				field := "descriptors[" + strconv.Itoa(i) + "]"
				line := 0
				if len(root.Content) > 0 {
					line = lineOf(root.Content[0], field)
				}
				name := nd.Key
				if nd.Value != "" {
					name += "_" + nd.Value
				}
				return &fielderr.Error{File: file, Line: line, Path: field,
					Err: fmt.Errorf("duplicate descriptor composite key '%s.%s' (also in %s)", d.Name, name, prev)}
			}
		}
	}
	into.Descriptors = append(into.Descriptors, d.Descriptors...)
	return nil
}

func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, &fielderr.Error{File: name, Err: err}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &fielderr.Error{File: name, Err: err}
	}
	if len(data) > MaxFileSize {
		return nil, &fielderr.Error{File: name, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
	}
	return data, nil
}

// domainLine is the line of the domain key, for duplicate-domain errors.
func domainLine(data []byte) int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return 0
	}
	if k, _ := field(root.Content[0], "domain"); k != nil {
		return k.Line
	}
	return 0
}

// Parse reads one file's bytes (name is used in errors) and returns its domain, validated as
// limiter.SetDomains would validate it.
func Parse(name string, data []byte) (limiter.Domain, error) {
	p := &parser{file: name}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return limiter.Domain{}, &fielderr.Error{File: name, Path: "domain", Err: errors.New("config file cannot have empty domain")}
		}
		return limiter.Domain{}, p.yamlError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return limiter.Domain{}, &fielderr.Error{File: name, Line: extra.Line, Err: errors.New("more than one YAML document: a file holds one domain")}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	d, err := p.domain(doc)
	if err != nil {
		return limiter.Domain{}, err
	}
	if err := limiter.ValidateDomains([]limiter.Domain{d}); err != nil {
		return limiter.Domain{}, p.validationError(doc, err)
	}
	return d, nil
}

type parser struct {
	file      string
	metaNodes int // metadata values read so far, bounded by maxMetaNodes
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) error {
	line := 0
	if n != nil {
		line = n.Line
	}
	return &fielderr.Error{File: p.file, Line: line, Path: path, Err: fmt.Errorf(format, args...)}
}

var yamlLine = strings.NewReplacer("yaml: ", "")

func (p *parser) yamlError(err error) error {
	msg := yamlLine.Replace(err.Error())
	line := 0
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		if j := strings.IndexByte(rest, ':'); j > 0 {
			if n, err := strconv.Atoi(rest[:j]); err == nil {
				line = n
				msg = strings.TrimSpace(rest[j+1:])
			}
		}
	}
	return &fielderr.Error{File: p.file, Line: line, Err: errors.New(msg)}
}

// field returns the key and value nodes of name in mapping m.
func field(m *yaml.Node, name string) (key, val *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// mapping checks that n is a mapping whose keys are all in known, and returns its fields.
func (p *parser) mapping(n *yaml.Node, path string, known ...string) (map[string]*yaml.Node, error) {
	n = resolveAlias(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return map[string]*yaml.Node{}, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, path, "must be a mapping")
	}
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		fp := join(path, k.Value)
		ok := false
		for _, want := range known {
			if k.Value == want {
				ok = true
				break
			}
		}
		if !ok {
			return nil, p.errorf(k, fp, "unknown key %q", k.Value)
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errorf(k, fp, "key %q given twice", k.Value)
		}
		out[k.Value] = resolveAlias(n.Content[i+1])
	}
	return out, nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

func (p *parser) str(n *yaml.Node, path string) (string, error) {
	if n == nil || isNull(n) {
		return "", nil
	}
	if n.Kind != yaml.ScalarNode {
		return "", p.errorf(n, path, "must be a string")
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, error) {
	if n == nil || isNull(n) {
		return false, nil
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, p.errorf(n, path, "must be true or false, not %q", n.Value)
	}
	return b, nil
}

// uint32Field reads a non-negative integer no larger than envoyproxy/ratelimit's uint32.
func (p *parser) uint32Field(n *yaml.Node, path string) (int64, error) {
	if n == nil || isNull(n) {
		return 0, nil
	}
	v, err := strconv.ParseInt(n.Value, 0, 64)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!str" || err != nil || v < 0 || v > 1<<32-1 {
		return 0, p.errorf(n, path, "must be a whole number from 0 to 4294967295, not %q", n.Value)
	}
	return v, nil
}

func (p *parser) duration(n *yaml.Node, path string) (time.Duration, error) {
	if n == nil || isNull(n) {
		return 0, nil
	}
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		return 0, p.errorf(n, path, "must be a positive duration such as 30s or 1h30m, not %q", n.Value)
	}
	return d, nil
}

func (p *parser) domain(n *yaml.Node) (limiter.Domain, error) {
	f, err := p.mapping(n, "", "domain", "descriptors", "failure_policy", "hash_tag_key", "all_or_nothing")
	if err != nil {
		return limiter.Domain{}, err
	}
	var d limiter.Domain
	if d.Name, err = p.str(f["domain"], "domain"); err != nil {
		return d, err
	}
	if d.Name == "" {
		return d, p.errorf(orNode(f["domain"], n), "domain", "config file cannot have empty domain")
	}
	if v := f["failure_policy"]; v != nil {
		s, err := p.str(v, "failure_policy")
		if err != nil {
			return d, err
		}
		if d.FailurePolicy, err = limiter.ParseFailurePolicy(s); err != nil {
			return d, p.errorf(v, "failure_policy", "%v", err)
		}
	}
	if d.HashTagKey, err = p.str(f["hash_tag_key"], "hash_tag_key"); err != nil {
		return d, err
	}
	allOrNothing, err := p.boolean(f["all_or_nothing"], "all_or_nothing")
	if err != nil {
		return d, err
	}
	d.CountRefused = !allOrNothing
	d.Descriptors, err = p.descriptors(f["descriptors"], "descriptors")
	d.PeerFormat = true
	return d, err
}

func orNode(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

func (p *parser) descriptors(n *yaml.Node, path string) ([]limiter.Descriptor, error) {
	if n == nil || isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errorf(n, path, "must be a list of descriptors")
	}
	out := make([]limiter.Descriptor, 0, len(n.Content))
	for i, c := range n.Content {
		d, err := p.descriptor(resolveAlias(c), path+"["+strconv.Itoa(i)+"]")
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func (p *parser) descriptor(n *yaml.Node, path string) (limiter.Descriptor, error) {
	f, err := p.mapping(n, path, "key", "value", "rate_limit", "descriptors", "shadow_mode", "detailed_metric",
		"share_threshold", "quota_mode", "value_to_metric", "metadata")
	if err != nil {
		return limiter.Descriptor{}, err
	}
	var d limiter.Descriptor
	if d.Key, err = p.str(f["key"], join(path, "key")); err != nil {
		return d, err
	}
	if d.Key == "" {
		return d, p.errorf(orNode(f["key"], n), join(path, "key"), "descriptor has empty key")
	}
	if d.Value, err = p.str(f["value"], join(path, "value")); err != nil {
		return d, err
	}
	if d.ShadowMode, err = p.boolean(f["shadow_mode"], join(path, "shadow_mode")); err != nil {
		return d, err
	}
	if d.DetailedMetric, err = p.boolean(f["detailed_metric"], join(path, "detailed_metric")); err != nil {
		return d, err
	}
	if d.ShareThreshold, err = p.boolean(f["share_threshold"], join(path, "share_threshold")); err != nil {
		return d, err
	}
	if d.ShareThreshold && !strings.Contains(d.Value, "*") {
		return d, p.errorf(f["share_threshold"], join(path, "share_threshold"),
			"share_threshold can only be used with wildcard values (containing '*'), but value is %q", d.Value)
	}
	if d.QuotaMode, err = p.boolean(f["quota_mode"], join(path, "quota_mode")); err != nil {
		return d, err
	}
	if d.ValueToMetric, err = p.boolean(f["value_to_metric"], join(path, "value_to_metric")); err != nil {
		return d, err
	}
	if d.Metadata, err = p.metadata(f["metadata"], join(path, "metadata")); err != nil {
		return d, err
	}
	if rl := f["rate_limit"]; rl != nil && !isNull(rl) {
		if d.RateLimit, err = p.rateLimit(rl, join(path, "rate_limit")); err != nil {
			return d, err
		}
	}
	d.Descriptors, err = p.descriptors(f["descriptors"], join(path, "descriptors"))
	return d, err
}

// units maps envoyproxy/ratelimit's units (case-insensitive, as it upper-cases them to look up
// its proto enum) to a Unit the limiter knows, or to a period for the two it does not.
func unitPeriod(u string) (unit string, period time.Duration, ok bool) {
	switch strings.ToLower(u) {
	case "second", "minute", "hour", "day", "week":
		return strings.ToLower(u), 0, true
	case "month":
		return "", 30 * 24 * time.Hour, true // envoyproxy/ratelimit's UnitToDivider
	case "year":
		return "", 365 * 24 * time.Hour, true
	}
	return "", 0, false
}

func (p *parser) rateLimit(n *yaml.Node, path string) (*limiter.RateLimit, error) {
	f, err := p.mapping(n, path, "unit", "requests_per_unit", "unlimited", "name", "replaces",
		"algorithm", "period", "burst", "tiers")
	if err != nil {
		return nil, err
	}
	r := &limiter.RateLimit{Algorithm: limiter.FixedWindow}
	if r.Unlimited, err = p.boolean(f["unlimited"], join(path, "unlimited")); err != nil {
		return nil, err
	}
	if r.Name, err = p.str(f["name"], join(path, "name")); err != nil {
		return nil, err
	}
	if v := f["algorithm"]; v != nil {
		s, err := p.str(v, join(path, "algorithm"))
		if err != nil {
			return nil, err
		}
		if r.Algorithm, err = limiter.ParseAlgorithm(s); err != nil {
			return nil, p.errorf(v, join(path, "algorithm"), "%v", err)
		}
	}
	if r.Period, err = p.duration(f["period"], join(path, "period")); err != nil {
		return nil, err
	}
	if r.RequestsPerUnit, err = p.uint32Field(f["requests_per_unit"], join(path, "requests_per_unit")); err != nil {
		return nil, err
	}
	if r.Burst, err = p.uint32Field(f["burst"], join(path, "burst")); err != nil {
		return nil, err
	}
	unitNode := f["unit"]
	unitStr, err := p.str(unitNode, join(path, "unit"))
	if err != nil {
		return nil, err
	}
	unit, period, validUnit := unitPeriod(unitStr)
	switch {
	case r.Unlimited && validUnit:
		// envoyproxy/ratelimit: "should not specify rate limit unit when unlimited".
		return nil, p.errorf(unitNode, join(path, "unit"), "should not specify rate limit unit when unlimited")
	case r.Unlimited:
		// envoyproxy/ratelimit ignores requests_per_unit (and every other setting) of an
		// unlimited limit.
		r.RequestsPerUnit, r.Burst, r.Period = 0, 0, 0
	case unitStr == "" && r.Period != 0:
	case !validUnit:
		return nil, p.errorf(orNode(unitNode, n), join(path, "unit"), "invalid rate limit unit %q (want second, minute, hour, day, week, month or year, or a period)", unitStr)
	case r.Period != 0:
		return nil, p.errorf(f["period"], join(path, "period"), "give unit or period, not both")
	default:
		r.Unit = unit
		if period != 0 {
			r.Period = period
		}
	}
	if !r.Unlimited && r.RequestsPerUnit == 0 && r.Burst == 0 {
		// requests_per_unit 0 (or absent) refuses everything in envoyproxy/ratelimit (its
		// README, example 3: "Black list IP").
		r.Ban = true
	}
	if v := f["replaces"]; v != nil && !isNull(v) {
		if v.Kind != yaml.SequenceNode {
			return nil, p.errorf(v, join(path, "replaces"), "must be a list of {name: ...}")
		}
		for i, c := range v.Content {
			rp := join(path, "replaces") + "[" + strconv.Itoa(i) + "]"
			rf, err := p.mapping(c, rp, "name")
			if err != nil {
				return nil, err
			}
			name, err := p.str(rf["name"], rp+".name")
			if err != nil {
				return nil, err
			}
			if name == "" {
				return nil, p.errorf(orNode(rf["name"], c), rp+".name", "should not have an empty replaces entry")
			}
			if name == r.Name {
				return nil, p.errorf(rf["name"], rp+".name", "replaces should not contain name of same descriptor")
			}
			r.Replaces = append(r.Replaces, name)
		}
	}
	if v := f["tiers"]; v != nil && !isNull(v) {
		tp := join(path, "tiers")
		if v.Kind != yaml.MappingNode {
			return nil, p.errorf(v, tp, "must be a mapping of tier name to limit")
		}
		r.Tiers = make(map[string]limiter.TierLimit, len(v.Content)/2)
		for i := 0; i+1 < len(v.Content); i += 2 {
			name := v.Content[i].Value
			t, err := p.tier(v.Content[i+1], tp+"."+name)
			if err != nil {
				return nil, err
			}
			if _, dup := r.Tiers[name]; dup {
				return nil, p.errorf(v.Content[i], tp+"."+name, "tier %q given twice", name)
			}
			r.Tiers[name] = t
		}
	}
	return r, nil
}

func (p *parser) tier(n *yaml.Node, path string) (limiter.TierLimit, error) {
	f, err := p.mapping(n, path, "unlimited", "unit", "requests_per_unit", "period", "burst")
	if err != nil {
		return limiter.TierLimit{}, err
	}
	var t limiter.TierLimit
	if t.Unlimited, err = p.boolean(f["unlimited"], join(path, "unlimited")); err != nil {
		return t, err
	}
	if t.RequestsPerUnit, err = p.uint32Field(f["requests_per_unit"], join(path, "requests_per_unit")); err != nil {
		return t, err
	}
	if t.Burst, err = p.uint32Field(f["burst"], join(path, "burst")); err != nil {
		return t, err
	}
	if t.Period, err = p.duration(f["period"], join(path, "period")); err != nil {
		return t, err
	}
	if u := f["unit"]; u != nil {
		s, err := p.str(u, join(path, "unit"))
		if err != nil {
			return t, err
		}
		unit, period, ok := unitPeriod(s)
		if !ok {
			return t, p.errorf(u, join(path, "unit"), "invalid rate limit unit %q", s)
		}
		if t.Period != 0 {
			return t, p.errorf(f["period"], join(path, "period"), "give unit or period, not both")
		}
		t.Unit, t.Period = unit, period
		if period != 0 {
			t.Unit = ""
		}
	}
	return t, nil
}

// validationError maps a *fielderr.Error path ("domains[0].descriptors[1].rate_limit.unit")
// to the line of that field in the file.
func (p *parser) validationError(doc *yaml.Node, err error) error {
	var ce *fielderr.Error
	if !errors.As(err, &ce) {
		return &fielderr.Error{File: p.file, Err: err}
	}
	path := ce.Path
	if strings.HasPrefix(path, "domains[0]") {
		path = strings.TrimPrefix(strings.TrimPrefix(path, "domains[0]"), ".")
	}
	return &fielderr.Error{File: p.file, Line: lineOf(doc, path), Path: path, Err: errors.New(ce.Err.Error())}
}

// lineOf finds the line of a dotted path with [i] indexes in a mapping node, or of the nearest
// enclosing node found.
func lineOf(n *yaml.Node, path string) int {
	cur, line := n, n.Line
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, rest := part, ""
		if i := strings.IndexByte(part, '['); i >= 0 {
			name, rest = part[:i], part[i:]
		}
		if name != "" {
			k, v := field(cur, name)
			if k == nil {
				return line
			}
			line, cur = k.Line, resolveAlias(v)
		}
		for strings.HasPrefix(rest, "[") {
			j := strings.IndexByte(rest, ']')
			if j < 0 {
				return line
			}
			idx, err := strconv.Atoi(rest[1:j])
			rest = rest[j+1:]
			if err != nil || cur.Kind != yaml.SequenceNode || idx < 0 || idx >= len(cur.Content) {
				return line
			}
			cur = resolveAlias(cur.Content[idx])
			line = cur.Line
		}
	}
	return line
}

// metadata reads a descriptor's free-form metadata: a mapping (or nothing) whose values are
// scalars, lists and mappings, as envoyproxy/ratelimit converts it to a protobuf Struct.
// Scalars keep YAML's types (string, int, float64, bool, nil); timestamps and other tagged
// scalars stay strings; keys become strings.
func (p *parser) metadata(n *yaml.Node, path string) (map[string]any, error) {
	if n == nil || isNull(n) {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errorf(n, path, "error parsing metadata: must be a mapping")
	}
	v, err := p.metaValue(n, path, 0)
	if err != nil {
		return nil, err
	}
	m := v.(map[string]any)
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// maxMetaDepth bounds metadata nesting; maxMetaNodes the values of one file's metadata, so
// that aliases cannot expand it without bound.
const (
	maxMetaDepth = 32
	maxMetaNodes = 100000
)

func (p *parser) metaValue(n *yaml.Node, path string, depth int) (any, error) {
	n = resolveAlias(n)
	if p.metaNodes++; p.metaNodes > maxMetaNodes {
		return nil, p.errorf(n, path, "error parsing metadata: more than %d values", maxMetaNodes)
	}
	if depth > maxMetaDepth {
		return nil, p.errorf(n, path, "error parsing metadata: nested more than %d levels", maxMetaDepth)
	}
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				return nil, p.errorf(k, path, "error parsing metadata: a key must be a scalar")
			}
			v, err := p.metaValue(n.Content[i+1], join(path, k.Value), depth+1)
			if err != nil {
				return nil, err
			}
			m[k.Value] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := p.metaValue(c, path+"["+strconv.Itoa(i)+"]", depth+1)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		return l, nil
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return nil, nil
		case "!!bool":
			var b bool
			if n.Decode(&b) == nil {
				return b, nil
			}
		case "!!int":
			var i int64
			if n.Decode(&i) == nil {
				return i, nil
			}
			var u uint64
			if n.Decode(&u) == nil {
				return float64(u), nil
			}
		case "!!float":
			var f float64
			if n.Decode(&f) == nil {
				return f, nil
			}
		}
		return n.Value, nil
	}
	return nil, p.errorf(n, path, "error parsing metadata: unsupported value")
}
