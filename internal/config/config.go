// Package config reads Warden's one YAML configuration file: it decodes it strictly (unknown
// keys are errors), resolves secret references (${ENV} and file:PATH: Secret fields, and the
// string fields of capability Configs tagged config:"secret"), validates it, and
// reports every mistake as one line naming the file, the line and the field
// (*fielderr.Error).
//
// It knows the shape of the file, not what the settings do: each capability's section is
// decoded as is into that package's own Config (Section.Decode; the Config's yaml tags are
// the section's schema, with the few settings of the server around it beside it in
// cmd/warden), and the field errors the capability's constructor returns get their
// file and line here (Section.Position), so that cmd/warden reports every mistake the same
// way.
package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/fielderr"
)

// File is the whole configuration file. The zero value (no file at all) is a valid
// configuration: Warden on loopback with the embedded in-memory store.
type File struct {
	Server    Server    `yaml:"server"`
	Log       Log       `yaml:"log"`
	Redis     Redis     `yaml:"redis"`
	Telemetry Telemetry `yaml:"telemetry"`

	// Capability sections. Each is decoded strictly by the code that builds the capability
	// (see Section.Decode), so that unknown keys are reported with their line.
	RateLimit Section `yaml:"rate_limit"`
	Authn     Section `yaml:"authn"`
	Authz     Section `yaml:"authz"`
	Webhooks  Section `yaml:"webhooks"`
	Envoy     Section `yaml:"envoy"`

	// Path is the file the configuration came from ("" when none). Version is a digest of
	// its bytes. Neither is read from YAML.
	Path    string `yaml:"-"`
	Version string `yaml:"-"`
}

// Server configures Warden's listeners.
type Server struct {
	// GRPCAddr is the gRPC listener. Default 127.0.0.1:50051.
	GRPCAddr string `yaml:"grpc_addr"`
	// AdminAddr is the HTTP listener for /healthz, /readyz and /metrics. Default
	// 127.0.0.1:9090; "off" disables it.
	AdminAddr string `yaml:"admin_addr"`
	// MaxRecvBytes caps a request message. Default 4 MiB.
	MaxRecvBytes int `yaml:"max_recv_bytes"`
	// Pprof serves /debug/pprof/ on the admin listener. Default false: profiles show
	// internals, so turn it on only where the admin listener is private.
	Pprof bool `yaml:"pprof"`
	// MaxConcurrentStreams per connection. Default 256: Envoy opens another connection
	// when one is full, and grpc-go clients queue.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// StreamRate and StreamBurst bound how fast one connection may open streams: a stream
	// over the budget is refused (RESOURCE_EXHAUSTED) before it gets a handler, and a
	// connection refused StreamBurst streams within a second is closed. StreamResetRate
	// bounds the streams per second a client may reset (RST_STREAM; as many at once)
	// before its connection is closed (HTTP/2 rapid reset). After a close, the source's new
	// connections are refused for StreamPenalty. Defaults 100000/s, 10000, 500/s, 1s
	// (negative StreamPenalty: none).
	StreamRate      float64       `yaml:"stream_rate"`
	StreamBurst     float64       `yaml:"stream_burst"`
	StreamResetRate float64       `yaml:"stream_reset_rate"`
	StreamPenalty   time.Duration `yaml:"stream_penalty"`
	// MaxRequestHeaders and MaxRequestHeaderBytes (names and values) bound the headers of
	// one request Warden decides on (ext_authz, Check, Authenticate, Authorize,
	// VerifyWebhook): more is INVALID_ARGUMENT (ext_authz: 400) before any other work.
	// Defaults 256 and 128 KiB, above Envoy's own limits (100 headers, 60 KiB).
	MaxRequestHeaders     int `yaml:"max_request_headers"`
	MaxRequestHeaderBytes int `yaml:"max_request_header_bytes"`
	// KeepaliveMinTime is the shortest ping interval accepted from clients. Default 5s, so
	// Envoy's 10 s pings are accepted.
	KeepaliveMinTime time.Duration `yaml:"keepalive_min_time"`
	// Drain is how long Warden keeps serving after reporting NOT_SERVING on SIGTERM, so that
	// load balancers stop sending. Default 2s.
	Drain time.Duration `yaml:"drain"`
	// ShutdownTimeout bounds the graceful stop after the drain; then connections are closed.
	// Default 10s.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	TLS             ServerTLS     `yaml:"tls"`
	// GCHeadroom is the most heap, in bytes, Warden lets the Go GC's goal rise above what
	// GOGC gives while the process allocates fast: enough for a quarter of a second of
	// allocation at the last cycle's rate, so that a loaded server collects a few times a
	// second, not dozens. An idle or slowly allocating server runs at GOGC as Go sets it.
	// Default 16 MiB; negative: off (Go's own pacing, the lowest memory under load). Not
	// used when GOGC is set in the environment.
	GCHeadroom int `yaml:"gc_headroom"`
}

// ServerTLS turns on TLS (and optionally mTLS) for the gRPC listener.
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, verifies client certificates against these CAs.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses connections without a valid client certificate.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Log configures the structured logger.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is json or text. Default json.
	Format string `yaml:"format"`
}

// Redis selects the shared store. With no addrs, Warden uses its embedded in-memory store.
type Redis struct {
	// Mode is single, sentinel or cluster. Default single (or sentinel when master_name is set).
	Mode  string   `yaml:"mode"`
	Addrs []string `yaml:"addrs"`
	// MasterName is the Sentinel master's name.
	MasterName       string `yaml:"master_name"`
	Username         string `yaml:"username"`
	Password         Secret `yaml:"password"`
	SentinelPassword Secret `yaml:"sentinel_password"`
	DB               int    `yaml:"db"`
	// PoolSize per node. Default go-redis's (10 per CPU), raised to leave room for
	// Pipelines.
	PoolSize int `yaml:"pool_size"`
	// Pipelines is the largest number of rate-limit pipelines in flight at once (each holds a
	// connection while it is out). Default 16, which keeps a Redis a few milliseconds away
	// busy; there is no batching timer to tune.
	Pipelines    int           `yaml:"pipelines"`
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	TLS          RedisTLS      `yaml:"tls"`
	// KeyPrefix is put before every key Warden writes. Default "warden:".
	KeyPrefix string `yaml:"key_prefix"`
	// RateLimitHashes is the number of Redis hashes that the rate-limit counters of one
	// Cluster hash slot are packed into (redisstore.Options.Hashes). Default 16384, at most
	// 65536: about the live counters of the busiest slot divided by 60.
	RateLimitHashes int `yaml:"rate_limit_hashes"`
}

// RedisTLS configures TLS to Redis.
type RedisTLS struct {
	Enabled    bool   `yaml:"enabled"`
	CAFile     string `yaml:"ca_file"`
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
}

// Telemetry configures metrics and traces.
type Telemetry struct {
	// TraceSampleRatio samples this share of requests for tracing through the gRPC stats
	// handler (0 disables tracing, which saves a few µs per call). Default 0.
	TraceSampleRatio float64 `yaml:"trace_sample_ratio"`
	// OTLP is where sampled spans are exported. Without an endpoint here or in
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT, spans are not exported.
	OTLP OTLP `yaml:"otlp"`
}

// OTLP configures the OTLP trace exporter. Unset fields fall back to the standard
// OTEL_EXPORTER_OTLP_* environment variables, which the exporter reads.
type OTLP struct {
	// Protocol is grpc or http/protobuf. Default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else
	// OTEL_EXPORTER_OTLP_PROTOCOL, else grpc.
	Protocol string `yaml:"protocol"`
	// Endpoint is the collector's URL (http://collector:4317 for grpc; for http/protobuf,
	// http://collector:4318, to which /v1/traces is added unless the URL has a path). An
	// http:// URL is plain text, https:// is TLS.
	Endpoint string `yaml:"endpoint"`
	// Headers are sent with every export (e.g. an API key), each value a secret reference.
	Headers []OTLPHeader `yaml:"headers"`
}

// OTLPHeader is one header of the OTLP exports.
type OTLPHeader struct {
	Name  string `yaml:"name"`
	Value Secret `yaml:"value"`
}

// Section is a capability's part of the file, kept as YAML until its builder decodes it.
type Section struct {
	node     *yaml.Node
	name     string
	file     string
	env      Env
	released bool // Release dropped node for a stub that keeps IsZero and Line
}

// UnmarshalYAML keeps the node for a later strict decode.
func (s *Section) UnmarshalYAML(n *yaml.Node) error {
	s.node = n
	return nil
}

// IsZero reports whether the section is absent or empty.
func (s Section) IsZero() bool {
	return s.node == nil || s.node.Kind == 0 || (s.node.Kind == yaml.ScalarNode && s.node.Tag == "!!null") ||
		(s.node.Kind == yaml.MappingNode && len(s.node.Content) == 0)
}

// Line is the section's line in the file (0 when absent).
func (s Section) Line() int {
	if s.node == nil {
		return 0
	}
	return s.node.Line
}

// Decode decodes the section strictly into v (a pointer; unknown keys are errors) and
// resolves its Secret fields. Errors name the file, the line and the field, with name as
// the section's path prefix. An absent section leaves v unchanged.
func (s Section) Decode(name string, v any) error {
	if s.released {
		return fmt.Errorf("config: section %s decoded after File.Release", name)
	}
	if s.IsZero() {
		return nil
	}
	if err := checkKnown(s.file, s.node, reflect.TypeOf(v), name); err != nil {
		return err
	}
	if err := s.node.Decode(v); err != nil {
		return yamlError(s.file, err, 0, name, s.node)
	}
	env := s.env
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	return resolveSecrets(s.file, reflect.ValueOf(v), name, env, s.FieldLine)
}

// FieldLine returns the line of the value at a dotted path ("webhooks.sources[2].secret";
// the section's own name may be left out), or the nearest enclosing line found. Capability
// validators report errors by path; this turns them into lines.
func (s Section) FieldLine(path string) int {
	if s.name != "" {
		path = strings.TrimPrefix(strings.TrimPrefix(path, s.name), ".")
	}
	return lineOf(s.node, path)
}

// Errorf returns a positioned *fielderr.Error for a field path inside the section
// ("envoy.rls.unavailable").
func (s Section) Errorf(path, format string, args ...any) error {
	return errAt(s.file, s.FieldLine(path), path, fmt.Sprintf(format, args...))
}

// Position is where a capability's validation errors get their file and line: every
// *fielderr.Error in err (one, a fielderr.List, or several joined), whose path is relative to
// the section's own Config, gets the section's name before its path and the line of that
// field (a path that already starts with the section's name is kept); an error of another
// type is reported at the section's line. It returns a
// *fielderr.Error, or a fielderr.List of them when there are several.
func (s Section) Position(err error) error {
	if err == nil {
		return nil
	}
	l := fielderr.Flatten(err)
	out := make(fielderr.List, len(l))
	for i, e := range l {
		c := *e
		if c.File == "" { // positioned already (a file the section names) otherwise
			if !underSection(c.Path, s.name) {
				c.Path = joinField(s.name, c.Path)
			}
			c.File, c.Line = fileName(s.file), s.FieldLine(c.Path)
		}
		out[i] = &c
	}
	if len(out) == 1 {
		return out[0]
	}
	return out
}

// underSection reports whether path already starts with the section's name (authz's paths
// do).
func underSection(path, name string) bool {
	return name != "" && (path == name || strings.HasPrefix(path, name+".") || strings.HasPrefix(path, name+"["))
}

// joinField is fielderr's path joining: name.path, name[i] for a path starting with "[".
func joinField(name, path string) string {
	switch {
	case path == "":
		return name
	case name == "":
		return path
	case strings.HasPrefix(path, "["):
		return name + path
	}
	return name + "." + path
}

// errAt is a positioned mistake.
func errAt(file string, line int, path, msg string) *fielderr.Error {
	return &fielderr.Error{File: fileName(file), Line: line, Path: path, Err: errors.New(msg)}
}

// fileName is how errors name the file: "config" when the bytes came from no file.
func fileName(file string) string {
	if file == "" {
		return "config"
	}
	return file
}

// Env looks up an environment variable; cmd passes os.LookupEnv.
type Env func(name string) (string, bool)

// Load reads and validates the file at path. env resolves ${VAR} secrets. An empty path
// returns the defaults.
func Load(path string, env Env) (*File, error) {
	if path == "" {
		f := &File{}
		f.applyDefaults()
		return f, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, errAt(path, 0, "", err.Error())
	}
	return Parse(path, data, env)
}

// Parse decodes and validates a file's bytes; path is used in error messages.
func Parse(path string, data []byte, env Env) (*File, error) {
	if env == nil {
		env = func(string) (string, bool) { return "", false }
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(path, err, 0, "", nil)
	}
	f := &File{Path: path}
	sum := sha256.Sum256(data)
	f.Version = hex.EncodeToString(sum[:8])
	if root.Kind == 0 || len(root.Content) == 0 {
		f.applyDefaults()
		return f, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(f); err != nil && !errors.Is(err, io.EOF) {
		var doc *yaml.Node
		if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
			doc = root.Content[0]
		}
		return nil, yamlError(path, err, 0, "", doc)
	}
	for name, s := range f.sections() {
		s.file, s.name = path, name
	}
	for _, s := range f.sections() {
		s.env = env
	}
	doc := root.Content[0]
	if err := resolveSecrets(path, reflect.ValueOf(f), "", env, func(p string) int { return lineOf(doc, p) }); err != nil {
		return nil, err
	}
	f.applyDefaults()
	if err := f.validate(doc); err != nil {
		return nil, err
	}
	return f, nil
}

// Release drops the YAML trees that the sections keep for their builders, once every
// builder has decoded its section (the server calls it after a successful start or reload).
// The trees are most of an idle server's live heap when the file lists many static API keys
// (1000 keys: about 5 MB of nodes), and the heap a loaded server grows to is a multiple of
// the live heap. Afterwards IsZero, Line and FieldLine still answer (with the section's
// line), and Decode returns an error.
func (f *File) Release() {
	for _, s := range f.sections() {
		if s.released {
			continue
		}
		if !s.IsZero() {
			s.node = &yaml.Node{Kind: yaml.ScalarNode, Line: s.Line()}
		} else {
			s.node = nil
		}
		s.released = true
	}
}

func (f *File) sections() map[string]*Section {
	return map[string]*Section{
		"rate_limit": &f.RateLimit, "authn": &f.Authn, "authz": &f.Authz,
		"webhooks": &f.Webhooks, "envoy": &f.Envoy,
	}
}

func (f *File) applyDefaults() {
	s := &f.Server
	if s.GRPCAddr == "" {
		s.GRPCAddr = "127.0.0.1:50051"
	}
	if s.AdminAddr == "" {
		s.AdminAddr = "127.0.0.1:9090"
	}
	if s.MaxRecvBytes == 0 {
		s.MaxRecvBytes = 4 << 20
	}
	if s.MaxConcurrentStreams == 0 {
		s.MaxConcurrentStreams = 256
	}
	if s.KeepaliveMinTime == 0 {
		s.KeepaliveMinTime = 5 * time.Second
	}
	if s.Drain == 0 {
		s.Drain = 2 * time.Second
	}
	if s.ShutdownTimeout == 0 {
		s.ShutdownTimeout = 10 * time.Second
	}
	if s.GCHeadroom == 0 {
		s.GCHeadroom = 16 << 20
	}
	if f.Log.Level == "" {
		f.Log.Level = "info"
	}
	if f.Log.Format == "" {
		f.Log.Format = "json"
	}
	if f.Redis.KeyPrefix == "" {
		f.Redis.KeyPrefix = "warden:"
	}
	if f.Redis.Mode == "" && len(f.Redis.Addrs) > 0 {
		f.Redis.Mode = "single"
		if f.Redis.MasterName != "" {
			f.Redis.Mode = "sentinel"
		}
	}
}

func (f *File) validate(doc *yaml.Node) error {
	bad := func(path, format string, args ...any) error {
		return errAt(f.Path, lineOf(doc, path), path, fmt.Sprintf(format, args...))
	}
	switch f.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad("log.level", "must be debug, info, warn or error, not %q", f.Log.Level)
	}
	switch f.Log.Format {
	case "json", "text":
	default:
		return bad("log.format", "must be json or text, not %q", f.Log.Format)
	}
	if f.Server.MaxRecvBytes < 1024 {
		return bad("server.max_recv_bytes", "must be at least 1024, not %d", f.Server.MaxRecvBytes)
	}
	if f.Server.StreamRate < 0 || f.Server.StreamBurst < 0 || f.Server.StreamResetRate < 0 {
		return bad("server.stream_rate", "must not be negative (0: the default)")
	}
	if f.Server.MaxRequestHeaders < 0 || f.Server.MaxRequestHeaderBytes < 0 {
		return bad("server.max_request_headers", "limits must not be negative (0: the default)")
	}
	if f.Server.Drain < 0 || f.Server.ShutdownTimeout < 0 {
		return bad("server.drain", "durations must not be negative")
	}
	if t := f.Server.TLS; (t.CertFile == "") != (t.KeyFile == "") {
		return bad("server.tls", "cert_file and key_file go together")
	}
	if t := f.Server.TLS; t.RequireClientCert && t.ClientCAFile == "" {
		return bad("server.tls.require_client_cert", "needs client_ca_file")
	}
	if r := f.Telemetry.TraceSampleRatio; r < 0 || r > 1 {
		return bad("telemetry.trace_sample_ratio", "must be between 0 and 1, not %v", r)
	}
	switch f.Telemetry.OTLP.Protocol {
	case "", "grpc", "http/protobuf":
	default:
		return bad("telemetry.otlp.protocol", "must be grpc or http/protobuf, not %q", f.Telemetry.OTLP.Protocol)
	}
	if e := f.Telemetry.OTLP.Endpoint; e != "" && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		return bad("telemetry.otlp.endpoint", "must be a URL (http://host:port or https://host:port), not %q", e)
	}
	r := f.Redis
	switch r.Mode {
	case "":
		if r.MasterName != "" {
			return bad("redis.addrs", "master_name is set but no addrs")
		}
	case "single":
		if len(r.Addrs) != 1 {
			return bad("redis.addrs", "single mode takes exactly one address, got %d", len(r.Addrs))
		}
	case "sentinel":
		if r.MasterName == "" {
			return bad("redis.master_name", "sentinel mode needs master_name")
		}
		if len(r.Addrs) == 0 {
			return bad("redis.addrs", "sentinel mode needs the sentinels' addresses")
		}
	case "cluster":
		if len(r.Addrs) == 0 {
			return bad("redis.addrs", "cluster mode needs at least one node address")
		}
	default:
		return bad("redis.mode", "must be single, sentinel or cluster, not %q", r.Mode)
	}
	for i, a := range r.Addrs {
		if _, _, err := splitHostPort(a); err != nil {
			return bad(fmt.Sprintf("redis.addrs[%d]", i), "%v", err)
		}
	}
	return nil
}

func splitHostPort(a string) (string, string, error) {
	i := strings.LastIndexByte(a, ':')
	if i <= 0 || i == len(a)-1 {
		return "", "", fmt.Errorf("%q is not host:port", a)
	}
	if _, err := strconv.ParseUint(a[i+1:], 10, 16); err != nil {
		return "", "", fmt.Errorf("%q has a bad port", a)
	}
	return a[:i], a[i+1:], nil
}

var yamlLine = regexp.MustCompile(`line (\d+): (.*)`)

// yamlError turns a yaml error into a *fielderr.Error with the first problem's line. offset is added
// to line numbers (for sections decoded from a re-encoded node). When node (the mapping that
// was decoded, whose path is field) is given, the error names the field at that line.
func yamlError(path string, err error, offset int, field string, node *yaml.Node) error {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		value := ""
		if kind := wrongKind.MatchString(m[2]); node != nil && (kind || wrongType.MatchString(m[2])) {
			if p, v, ok := pathAt(node, line, field, kind); ok {
				field, value = p, v
			}
		}
		return errAt(path, line+offset, field, cleanYAMLMsg(m[2], value))
	}
	return errAt(path, 0, field, msg)
}

// pathAt returns the dotted path (under prefix) and the value of the scalar at line in n,
// for an error yaml reports by line only; with collection, of the list or mapping there.
func pathAt(n *yaml.Node, line int, prefix string, collection bool) (string, string, bool) {
	// at looks at v, the value at path p: a scalar at line, or (with collection) the
	// deepest list or mapping at line.
	at := func(p string, v *yaml.Node, keyLine int) (string, string, bool) {
		if v.Kind == yaml.ScalarNode || v.Kind == yaml.AliasNode {
			return p, v.Value, !collection && (v.Line == line || keyLine == line)
		}
		if q, val, ok := pathAt(v, line, p, collection); ok {
			return q, val, true
		}
		return p, "", collection && v.Line == line
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if p, v, ok := at(joinField(prefix, n.Content[i].Value), n.Content[i+1], n.Content[i].Line); ok {
				return p, v, true
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			if p, val, ok := at(prefix+"["+strconv.Itoa(i)+"]", v, -1); ok {
				return p, val, true
			}
		}
	}
	return "", "", false
}

var notFound = regexp.MustCompile(`^field (\S+) not found in type \S+$`)

// wrongType is yaml's message for a value of the wrong kind.
var wrongType = regexp.MustCompile("^cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")

// wrongKind is yaml's message for a list or a mapping where a scalar was wanted.
var wrongKind = regexp.MustCompile(`^cannot unmarshal !!(seq|map) into (\S+)$`)

// wantType says in words what a Go type named in yaml's messages wants.
var wantType = map[string]string{
	"time.Duration": "a duration (e.g. 500ms, 30s, 1m30s)",
	"bool":          "true or false",
	"string":        "a string",
	"float64":       "a number",
	"float32":       "a number",
}

// cleanYAMLMsg rewords yaml's message m; value, when known, is the value it is about (yaml
// shortens long ones).
func cleanYAMLMsg(m, value string) string {
	if s := notFound.FindStringSubmatch(m); s != nil {
		return "unknown field " + strconv.Quote(s[1])
	}
	if s := wrongKind.FindStringSubmatch(m); s != nil {
		if want, ok := wantType[s[2]]; ok || strings.HasPrefix(s[2], "int") || strings.HasPrefix(s[2], "uint") {
			if !ok {
				want = "an integer"
			}
			return "want " + want + ", not a " + map[string]string{"seq": "list", "map": "mapping"}[s[1]]
		}
		return m
	}
	if s := wrongType.FindStringSubmatch(m); s != nil {
		want, ok := wantType[s[2]]
		switch {
		case ok:
		case strings.HasPrefix(s[2], "int"), strings.HasPrefix(s[2], "uint"):
			want = "an integer"
		case strings.HasPrefix(s[2], "[]"):
			want = "a list"
		case strings.HasPrefix(s[2], "map["):
			want = "a mapping"
		default:
			return m
		}
		if value == "" {
			value = s[1]
		}
		return "want " + want + ", not " + strconv.Quote(value)
	}
	return m
}

// lineOf finds the line of a dotted path ("redis.addrs[1]") in a mapping node.
func lineOf(n *yaml.Node, path string) int {
	if n == nil {
		return 0
	}
	cur := n
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			continue
		}
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			name = part[:i]
			if v, err := strconv.Atoi(part[i+1 : len(part)-1]); err == nil {
				idx = v
			}
		}
		if name != "" {
			if cur.Kind != yaml.MappingNode {
				return line
			}
			found := false
			for i := 0; i+1 < len(cur.Content); i += 2 {
				if cur.Content[i].Value == name {
					line = cur.Content[i].Line
					cur = cur.Content[i+1]
					found = true
					break
				}
			}
			if !found {
				return line
			}
		}
		if idx >= 0 {
			if cur.Kind != yaml.SequenceNode || idx >= len(cur.Content) {
				return line
			}
			cur = cur.Content[idx]
			line = cur.Line
		}
	}
	return line
}

// File is the path of the file the section came from.
func (s Section) File() string { return s.file }
