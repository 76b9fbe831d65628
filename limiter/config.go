package limiter

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wardenhq/warden/fielderr"
)

// The descriptor configuration mirrors envoyproxy/ratelimit's YAML one to one, so that a
// loader can convert a ratelimit config file field by field, and extends it (marked "Warden"
// below). The yaml tags are the schema of Warden's own rate_limit.domains; fields tagged "-"
// are read from envoyproxy/ratelimit files only (limiter/rlconfig). Paths in *fielderr.Error use the YAML names given with each field, and
// "domains[i]" for the i-th Domain passed to Limiter.SetDomains or Config.Domains.

// Domain is one rate-limit domain: a tree of descriptors (ratelimit's top-level "domain" and
// "descriptors").
type Domain struct {
	// Name is the domain ("domain"). Required, unique.
	Name string `yaml:"domain"`
	// Descriptors are the top-level descriptors ("descriptors").
	Descriptors []Descriptor `yaml:"descriptors"`

	// FailurePolicy is what Check does when the store cannot answer ("failure_policy";
	// Warden). Default FailOpen.
	FailurePolicy FailurePolicy `yaml:"failure_policy"`
	// HashTagKey, when set, names a descriptor entry key whose value (the first entry with that
	// key in the request) is the request's hash tag, instead of the domain name
	// ("hash_tag_key"; Warden). Use it to spread a big domain over a Redis Cluster: all the
	// counters of one request still share one slot.
	HashTagKey string `yaml:"hash_tag_key"`
	// PeerFormat marks a domain read from an envoyproxy/ratelimit file (limiter/rlconfig sets
	// it): where that service's semantics differ from Warden's, the domain follows them.
	// Replaces may name limits that do not exist, and only limits given a Name can be
	// replaced (an unnamed limit's default name is Warden's, not the peer's).
	PeerFormat bool `yaml:"-"`
	// CountRefused makes the domain's fixed-window limits count every hit, refused or not,
	// each descriptor on its own: envoyproxy/ratelimit's counting, which its token-quota
	// pattern needs (check with cost 0, charge the real cost afterwards: a later check sees the
	// charge that went over). A hit is over its limit when the count after it exceeds the
	// limit, and remaining is what is left, never negative. Other algorithms, and domains
	// without it, are all or nothing: a refused request consumes nothing. limiter/rlconfig sets
	// it unless the file says all_or_nothing: true.
	CountRefused bool `yaml:"-"`
}

// Descriptor is one node of a domain's tree ("descriptors[i]").
type Descriptor struct {
	// Key is the entry key to match ("key"). Required.
	Key string `yaml:"key"`
	// Value is the entry value to match ("value"). Empty matches any value and counts each
	// distinct value separately. A value containing "*" is a wildcard: each "*" matches any
	// run of characters, possibly empty, so "/api/*/action" matches "/api/v1/action" and
	// "foo*" every value starting with "foo" (one counter per distinct value, unless
	// ShareThreshold), as envoyproxy/ratelimit matches them.
	Value string `yaml:"value"`
	// RateLimit is the limit applied when a request descriptor ends at this node ("rate_limit");
	// nil applies none (the node only holds nested descriptors).
	RateLimit *RateLimit `yaml:"rate_limit"`
	// ShadowMode counts against the limit and reports it, but never denies ("shadow_mode").
	ShadowMode bool `yaml:"shadow_mode"`
	// DetailedMetric counts this limit's decisions in metrics under its name
	// ("detailed_metric").
	DetailedMetric bool `yaml:"detailed_metric"`
	// ShareThreshold makes all values matched by a wildcard Value share one counter
	// ("share_threshold"). Only valid with a wildcard Value.
	ShareThreshold bool `yaml:"share_threshold"`
	// QuotaMode makes the limit a quota ("quota_mode"): its refusal is reported in the
	// descriptor's status, but the request is refused for quotas only when every quota-mode
	// limit that applied refused it (limits not in quota mode refuse as usual), as
	// envoyproxy/ratelimit does.
	QuotaMode bool `yaml:"-"`
	// ValueToMetric puts the request's value, rather than the configured one, into this
	// node's part of the limit's metric name ("value_to_metric"). Metric names only.
	ValueToMetric bool `yaml:"-"`
	// Metadata is free-form data attached to the limit ("metadata"): strings, numbers,
	// booleans, nil, lists and maps with string keys. Warden carries it; it does not change
	// decisions.
	Metadata map[string]any `yaml:"-"`
	// Descriptors are the nested descriptors ("descriptors").
	Descriptors []Descriptor `yaml:"descriptors"`
}

// RateLimit is a descriptor's limit ("rate_limit").
type RateLimit struct {
	// Name names the limit in responses, headers and metrics, and for Replaces ("name").
	// Default: the descriptor path, e.g. "domain.key_value.key".
	Name string `yaml:"name"`
	// Replaces lists the names of limits that this one replaces when both apply to a request
	// ("replaces": [{name: ...}]).
	Replaces Names `yaml:"replaces"`
	// Unlimited applies no limit ("unlimited").
	Unlimited bool `yaml:"unlimited"`
	// Ban refuses every request that reaches this limit, without counting: what
	// envoyproxy/ratelimit does for "requests_per_unit: 0" (limiter/rlconfig sets it then).
	// RequestsPerUnit and Burst must be 0; Unit or Period still give Retry-After. Tiers are
	// ignored.
	Ban bool `yaml:"-"`
	// Unit is the period as envoyproxy/ratelimit spells it ("unit"): second, minute, hour,
	// day, week (case-insensitive). Ignored when Period is set.
	Unit string `yaml:"unit"`
	// RequestsPerUnit is the number of units allowed per period ("requests_per_unit").
	RequestsPerUnit int64 `yaml:"requests_per_unit"`

	// Period is any period, overriding Unit ("period"; Warden).
	Period time.Duration `yaml:"period"`
	// Algorithm counts the limit ("algorithm"; Warden). The zero value is TokenBucket;
	// a loader converting envoyproxy/ratelimit files sets FixedWindow, its semantics.
	Algorithm Algorithm `yaml:"algorithm"`
	// Burst is the token bucket's size; 0 means RequestsPerUnit ("burst"; Warden).
	Burst int64 `yaml:"burst"`
	// Tiers override RequestsPerUnit, the period and Burst for principals of a tier
	// (Request.Tier), e.g. {"free": 100 per minute, "paid": 1000 per minute} ("tiers"; Warden).
	// A request of another tier, or none, gets the limit above.
	Tiers map[string]TierLimit `yaml:"tiers"`
	// Lease, when set, lets each replica take a slice of this limit's quota from the store in
	// one Take and decide locally until the slice or its lease runs out ("lease"; Warden).
	// Off by default. See Lease for what it trades.
	Lease *Lease `yaml:"lease"`
}

// Lease is a limit's quota leasing ("rate_limit.lease"): a replica debits Units from the
// store at once, for one counter key, and admits the next requests on that key from this
// local slice without asking the store, until the slice cannot cover a request's cost or TTL
// has passed since it was taken (for a fixed window, also no later than the end of the window
// the units were counted in). When the store refuses a whole slice, the request asks for
// exactly its cost, so the limit can still be reached exactly.
//
// What it trades, with N replicas sharing the store and unit-cost requests:
//   - fixed_window: no overshoot (every admitted unit was counted by the store in the window
//     it is admitted in); the limit stays exact.
//   - token_bucket: a leased unit is admitted up to TTL after the store debited it, so any
//     interval of length d admits at most Burst + rate*(d+TTL): the exact bucket's bound plus
//     rate*TTL (Limit*TTL/Period units), whatever N.
//   - under-admission: units debited into a replica's slice and not used there (at most
//     Units-1 per replica, so (N-1)*(Units-1) when one replica is refused) are refused to the
//     others until the slice expires.
//
// Only token_bucket and fixed_window limits take a lease: a sliding_window or sliding_log
// unit admitted later than the store counted it has no stated bound (sliding_log's point is
// exactness). Not with shadow_mode, and not in envoyproxy/ratelimit files.
type Lease struct {
	// Units is the slice size, 1 to the limit's quota (RequestsPerUnit, or Burst for a
	// token bucket), checked for every tier ("units").
	Units int64 `yaml:"units"`
	// TTL is how long a slice may be used after it was taken: more than 0, at most the limit's
	// period and at most MaxLeaseTTL ("ttl").
	TTL time.Duration `yaml:"ttl"`
}

// MaxLeaseTTL bounds Lease.TTL: the token bucket's overshoot grows with it.
const MaxLeaseTTL = time.Minute

// TierLimit is a RateLimit's override for one tier ("tiers.NAME"). Zero fields keep the
// RateLimit's values, except that a tier setting RequestsPerUnit without Burst gets the default
// burst (its own RequestsPerUnit), not the base limit's Burst.
type TierLimit struct {
	Unlimited       bool          `yaml:"unlimited"`
	Unit            string        `yaml:"unit"`
	RequestsPerUnit int64         `yaml:"requests_per_unit"`
	Period          time.Duration `yaml:"period"`
	Burst           int64         `yaml:"burst"`
}

// FailurePolicy is what Check does for a domain when the store fails or its circuit breaker
// is open.
type FailurePolicy uint8

const (
	// FailOpen allows the request; statuses report Source FromFailOpen and unknown remaining.
	FailOpen FailurePolicy = iota
	// FailClosed returns an error wrapping ErrUnavailable.
	FailClosed
	// Local counts in Config.Fallback, an in-process store, with each limit divided by
	// Config.Replicas (rounded up): every replica enforces its share.
	Local
)

var policyNames = [...]string{"fail_open", "fail_closed", "local"}

func (p FailurePolicy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return "unknown"
}

// ParseFailurePolicy parses "fail_open", "fail_closed" or "local".
func ParseFailurePolicy(s string) (FailurePolicy, error) {
	for i, n := range policyNames {
		if s == n {
			return FailurePolicy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown failure policy %q (want fail_open, fail_closed or local)", s)
}

// UnmarshalText reads a policy's name (ParseFailurePolicy); empty is FailOpen.
func (p *FailurePolicy) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*p = FailOpen
		return nil
	}
	v, err := ParseFailurePolicy(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// UnmarshalText reads an algorithm's name (ParseAlgorithm); empty is TokenBucket.
func (a *Algorithm) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*a = TokenBucket
		return nil
	}
	v, err := ParseAlgorithm(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Names are the names of limits (RateLimit.Replaces). In YAML each is a mapping with a name,
// as envoyproxy/ratelimit writes replaces: [{name: a}, {name: b}].
type Names []string

// UnmarshalYAML reads [{name: a}, ...]. It is the yaml packages' func-style Unmarshaler, so
// that this package imports no YAML library.
func (n *Names) UnmarshalYAML(unmarshal func(any) error) error {
	var items []struct {
		Name string `yaml:"name"`
	}
	if err := unmarshal(&items); err != nil {
		return err
	}
	*n = nil
	for _, it := range items {
		*n = append(*n, it.Name)
	}
	return nil
}

// ParseAlgorithm parses an Algorithm's String form: "token_bucket", "sliding_window",
// "fixed_window" or "sliding_log".
func ParseAlgorithm(s string) (Algorithm, error) {
	for i, n := range algorithmNames {
		if s == n {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("unknown algorithm %q (want token_bucket, sliding_window, fixed_window or sliding_log)", s)
}

// UnitPeriod returns the period of an envoyproxy/ratelimit unit.
func UnitPeriod(unit string) (time.Duration, error) {
	switch strings.ToLower(unit) {
	case "second":
		return time.Second, nil
	case "minute":
		return time.Minute, nil
	case "hour":
		return time.Hour, nil
	case "day":
		return 24 * time.Hour, nil
	case "week":
		return 7 * 24 * time.Hour, nil
	}
	return 0, fmt.Errorf("unknown unit %q (want second, minute, hour, day or week, or set period)", unit)
}

// ValidateDomains checks domains as SetDomains would, returning the first error as a
// *fielderr.Error whose Path names the field.
func ValidateDomains(domains []Domain) error {
	_, err := compile(domains)
	return err
}

// compiled is an immutable, validated configuration.
type compiled struct {
	domains map[string]*cdomain
}

type cdomain struct {
	name    string
	tagKey  string
	peer    bool // Domain.PeerFormat
	counts  bool // Domain.CountRefused
	policy  FailurePolicy
	root    *level
	metrics domainMetrics
	// peerStats counts under envoyproxy/ratelimit's stat names (nil: not counted).
	peerStats *PeerStats
}

// level is one level of the tree: exact value matches beat wildcards, which beat value-less
// keys.
type level struct {
	exact   map[kv]*node
	wild    []wildNode // in configuration order
	keyOnly map[string]*node
}

type kv struct{ key, value string }

type wildNode struct {
	key   string
	parts []string // the pattern split on "*": at least two parts
	n     *node
}

type node struct {
	wildcard bool // matched by a pattern with "*"
	keyOnly  bool // matched by key, any value
	v2m      bool // Descriptor.ValueToMetric
	share    bool // ShareThreshold: the pattern, not the value, goes into the counter key
	pattern  string
	lim      *climit // nil: no limit at this node
	children *level
}

// climit is a compiled RateLimit.
type climit struct {
	name string
	// named: the configuration gave the name (RateLimit.Name); otherwise name is the default.
	named    bool
	shadow   bool
	quota    bool           // Descriptor.QuotaMode
	metadata map[string]any // Descriptor.Metadata
	detailed bool
	replaces []string
	base     tierLimit
	tiers    map[string]*tierLimit
	// staticPrefix is the counter key without the limit suffix when every node on the path is
	// an exact match ("" otherwise).
	staticPrefix string
	// statKey is envoyproxy/ratelimit's stat key of the limit: its descriptor path
	// ("domain.key_value.key"), whatever its name; stat its counters (PeerStats).
	statKey string
	stat    peerStat
}

type tierLimit struct {
	unlimited bool
	// ban: requests_per_unit 0, envoyproxy/ratelimit's way to refuse every request (its
	// README, example 3). Nothing is counted; limit holds the name, algorithm and period.
	ban    bool
	limit  Limit
	params Params
	// key is the full counter key for a static path ("" otherwise).
	key string
	// suffix identifies the algorithm and period in the counter key.
	suffix string
	// lease is RateLimit.Lease (zero: none).
	lease leaseConf
}

// leaseConf is a compiled Lease; units 0 means no leasing.
type leaseConf struct {
	units int64
	ttl   time.Duration
}

func compile(domains []Domain) (*compiled, error) {
	c := &compiled{domains: make(map[string]*cdomain, len(domains))}
	for i := range domains {
		d := &domains[i]
		path := "domains[" + strconv.Itoa(i) + "]"
		if d.Name == "" {
			return nil, &fielderr.Error{Path: path + ".domain", Err: errors.New("required")}
		}
		if _, dup := c.domains[d.Name]; dup {
			return nil, &fielderr.Error{Path: path + ".domain", Err: fmt.Errorf("duplicate domain %q", d.Name)}
		}
		if d.FailurePolicy > Local {
			return nil, &fielderr.Error{Path: path + ".failure_policy", Err: fmt.Errorf("unknown failure policy %d", d.FailurePolicy)}
		}
		cd := &cdomain{name: d.Name, tagKey: d.HashTagKey, peer: d.PeerFormat, counts: d.CountRefused, policy: d.FailurePolicy}
		names := map[string]bool{}
		var replaces []replaceRef
		root, err := compileLevel(d.Descriptors, path+".descriptors", escape(d.Name), d.Name, true, names, &replaces)
		if err != nil {
			return nil, err
		}
		cd.root = root
		for _, r := range replaces {
			if !names[r.name] && !d.PeerFormat {
				return nil, &fielderr.Error{Path: r.path, Err: fmt.Errorf("no limit named %q in domain %q", r.name, d.Name)}
			}
		}
		c.domains[d.Name] = cd
	}
	return c, nil
}

type replaceRef struct{ name, path string }

func compileLevel(ds []Descriptor, path, keyPrefix, namePrefix string, static bool, names map[string]bool, replaces *[]replaceRef) (*level, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	lv := &level{exact: map[kv]*node{}, keyOnly: map[string]*node{}}
	seen := map[kv]bool{}
	for i := range ds {
		d := &ds[i]
		p := path + "[" + strconv.Itoa(i) + "]"
		if d.Key == "" {
			return nil, &fielderr.Error{Path: p + ".key", Err: errors.New("required")}
		}
		if seen[kv{d.Key, d.Value}] {
			return nil, &fielderr.Error{Path: p, Err: fmt.Errorf("duplicate descriptor key %q value %q", d.Key, d.Value)}
		}
		seen[kv{d.Key, d.Value}] = true
		n := &node{v2m: d.ValueToMetric}
		exact := d.Value != "" && !strings.Contains(d.Value, "*")
		if d.ShareThreshold && !strings.Contains(d.Value, "*") {
			return nil, &fielderr.Error{Path: p + ".share_threshold", Err: fmt.Errorf("share_threshold can only be used with wildcard values (containing '*'), but value is %q", d.Value)}
		}
		childStatic := static && exact
		name := namePrefix + "." + d.Key
		if d.Value != "" {
			name += "_" + d.Value
		}
		kp := keyPrefix + "|" + escape(d.Key) + "="
		switch {
		case exact:
			kp += escape(d.Value)
			lv.exact[kv{d.Key, d.Value}] = n
		case d.Value != "":
			n.wildcard, n.share, n.pattern = true, d.ShareThreshold, d.Value
			lv.wild = append(lv.wild, wildNode{key: d.Key, parts: strings.Split(d.Value, "*"), n: n})
		default:
			n.keyOnly = true
			lv.keyOnly[d.Key] = n
		}
		if d.RateLimit != nil {
			cl, err := compileLimit(d, p, name, names, replaces)
			if err != nil {
				return nil, err
			}
			if childStatic {
				cl.staticPrefix = kp
				cl.base.key = kp + cl.base.suffix
				for _, tl := range cl.tiers {
					tl.key = kp + tl.suffix
				}
			}
			n.lim = cl
		}
		children, err := compileLevel(d.Descriptors, p+".descriptors", kp, name, childStatic, names, replaces)
		if err != nil {
			return nil, err
		}
		n.children = children
	}
	return lv, nil
}

func compileLimit(d *Descriptor, path, defaultName string, names map[string]bool, replaces *[]replaceRef) (*climit, error) {
	r := d.RateLimit
	path += ".rate_limit"
	cl := &climit{name: r.Name, named: r.Name != "", shadow: d.ShadowMode, quota: d.QuotaMode, metadata: d.Metadata,
		detailed: d.DetailedMetric, replaces: r.Replaces, statKey: defaultName}
	if cl.name == "" {
		cl.name = defaultName
	}
	if err := checkName(cl.name); err != nil {
		return nil, &fielderr.Error{Path: path + ".name", Err: err}
	}
	names[cl.name] = true
	for i, rn := range r.Replaces {
		*replaces = append(*replaces, replaceRef{rn, path + ".replaces[" + strconv.Itoa(i) + "].name"})
	}
	if r.Algorithm > SlidingLog {
		return nil, &fielderr.Error{Path: path + ".algorithm", Err: fmt.Errorf("unknown algorithm %d", r.Algorithm)}
	}
	if r.Ban {
		if r.RequestsPerUnit != 0 || r.Burst != 0 || r.Unlimited {
			return nil, &fielderr.Error{Path: path + ".requests_per_unit", Err: errors.New("must be 0 for a ban")}
		}
		base, err := compileTier(path, cl.name, r.Algorithm, false, r.Unit, 1, r.Period, 0)
		if err != nil {
			return nil, err
		}
		base.ban, base.limit.Limit = true, 0
		cl.base = base
		return cl, nil
	}
	base, err := compileTier(path, cl.name, r.Algorithm, r.Unlimited, r.Unit, r.RequestsPerUnit, r.Period, r.Burst)
	if err != nil {
		return nil, err
	}
	cl.base = base
	if len(r.Tiers) > 0 {
		cl.tiers = make(map[string]*tierLimit, len(r.Tiers))
		for t, o := range r.Tiers {
			tp := path + ".tiers." + t
			if t == "" {
				return nil, &fielderr.Error{Path: path + ".tiers", Err: errors.New("empty tier name")}
			}
			unit, rpu, period, burst := r.Unit, r.RequestsPerUnit, r.Period, r.Burst
			if o.Unit != "" || o.Period != 0 {
				unit, period = o.Unit, o.Period
			}
			if o.RequestsPerUnit != 0 {
				// A tier with its own rate gets its own default burst.
				rpu, burst = o.RequestsPerUnit, 0
			}
			if o.Burst != 0 {
				burst = o.Burst
			}
			tl, err := compileTier(tp, cl.name, r.Algorithm, o.Unlimited, unit, rpu, period, burst)
			if err != nil {
				return nil, err
			}
			cl.tiers[t] = &tl
		}
	}
	if r.Lease != nil {
		if err := compileLease(cl, d, r, path+".lease"); err != nil {
			return nil, err
		}
	}
	return cl, nil
}

// compileLease checks RateLimit.Lease against the base limit and every tier, and sets it on
// each.
func compileLease(cl *climit, d *Descriptor, r *RateLimit, path string) error {
	ls := r.Lease
	if d.ShadowMode {
		return &fielderr.Error{Path: path, Err: errors.New("not with shadow_mode")}
	}
	switch r.Algorithm {
	case TokenBucket, FixedWindow:
	default:
		return &fielderr.Error{Path: path, Err: fmt.Errorf("only token_bucket and fixed_window limits can be leased, not %s (a unit admitted after the store counted it has no stated bound)", r.Algorithm)}
	}
	if ls.Units < 1 {
		return &fielderr.Error{Path: path + ".units", Err: errors.New("must be at least 1")}
	}
	if ls.TTL <= 0 {
		return &fielderr.Error{Path: path + ".ttl", Err: errors.New("must be positive")}
	}
	if ls.TTL > MaxLeaseTTL {
		return &fielderr.Error{Path: path + ".ttl", Err: fmt.Errorf("must be at most %v", MaxLeaseTTL)}
	}
	tls := []*tierLimit{&cl.base}
	for _, tl := range cl.tiers {
		tls = append(tls, tl)
	}
	for _, tl := range tls {
		if tl.unlimited {
			continue
		}
		if q := tl.params.Burst; ls.Units > q {
			return &fielderr.Error{Path: path + ".units", Err: fmt.Errorf("%d is more than the limit's quota %d", ls.Units, q)}
		}
		if ls.TTL > tl.limit.Period {
			return &fielderr.Error{Path: path + ".ttl", Err: fmt.Errorf("%v is longer than the limit's period %v", ls.TTL, tl.limit.Period)}
		}
		tl.lease = leaseConf{units: ls.Units, ttl: ls.TTL}
	}
	return nil
}

func compileTier(path, name string, alg Algorithm, unlimited bool, unit string, rpu int64, period time.Duration, burst int64) (tierLimit, error) {
	if unlimited {
		if rpu != 0 && !strings.Contains(path, ".tiers.") {
			return tierLimit{}, &fielderr.Error{Path: path + ".requests_per_unit", Err: errors.New("must not be set with unlimited")}
		}
		return tierLimit{unlimited: true}, nil
	}
	if period == 0 {
		if unit == "" {
			return tierLimit{}, &fielderr.Error{Path: path + ".unit", Err: errors.New("required (or period)")}
		}
		p, err := UnitPeriod(unit)
		if err != nil {
			return tierLimit{}, &fielderr.Error{Path: path + ".unit", Err: err}
		}
		period = p
	}
	l := Limit{Name: name, Algorithm: alg, Limit: rpu, Period: period, Burst: burst}
	if err := l.Validate(); err != nil {
		var ce *fielderr.Error
		if errors.As(err, &ce) {
			field := map[string]string{"limit": "requests_per_unit", "period": "period", "burst": "burst", "algorithm": "algorithm"}[ce.Path]
			if field == "period" && unit != "" {
				field = "unit"
			}
			return tierLimit{}, &fielderr.Error{Path: path + "." + field, Err: ce.Err}
		}
		return tierLimit{}, at(path, err)
	}
	return tierLimit{
		limit:  l,
		params: l.Params(),
		suffix: "|" + string("tsfl"[alg]) + strconv.FormatInt(int64(period/time.Microsecond), 10),
	}, nil
}

// checkName accepts names that are printable ASCII: they appear in HTTP headers.
func checkName(s string) error {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("name %q: only printable ASCII", s)
		}
	}
	return nil
}

// escape makes a key part unambiguous: '%', '|' and '=' are percent-encoded.
func escape(s string) string {
	if !strings.ContainsAny(s, "%|=") {
		return s
	}
	return string(appendEscaped(nil, s))
}

func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%', '|', '=':
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		default:
			b = append(b, c)
		}
	}
	return b
}

// find returns the child of lv matching one entry: an exact value, else the first wildcard
// (in configuration order) the value matches, else a value-less key.
func (lv *level) find(e Entry) *node {
	if lv == nil {
		return nil
	}
	if n := lv.exact[kv{e.Key, e.Value}]; n != nil {
		return n
	}
	for i := range lv.wild {
		if w := &lv.wild[i]; w.key == e.Key && wildcardMatch(w.parts, e.Value) {
			return w.n
		}
	}
	return lv.keyOnly[e.Key]
}

// resolve walks the tree as envoyproxy/ratelimit does: a limit applies when the node matching
// the last entry has one.
func (d *cdomain) resolve(entries []Entry) *climit {
	lv := d.root
	for i, e := range entries {
		n := lv.find(e)
		if n == nil {
			return nil
		}
		if i == len(entries)-1 {
			return n.lim
		}
		lv = n.children
	}
	return nil
}

// tier picks the limit for a tier.
func (cl *climit) tier(t string) *tierLimit {
	if t != "" && cl.tiers != nil {
		if tl := cl.tiers[t]; tl != nil {
			return tl
		}
	}
	return &cl.base
}

// appendKey appends the counter key of entries for a limit whose path is not static:
// domain|key=value|...|suffix, with values matched by a shared wildcard replaced by the
// pattern.
func (d *cdomain) appendKey(b []byte, entries []Entry, tl *tierLimit) []byte {
	b = appendEscaped(b, d.name)
	lv := d.root
	for _, e := range entries {
		n := lv.find(e)
		b = append(b, '|')
		b = appendEscaped(b, e.Key)
		b = append(b, '=')
		if n != nil && n.share {
			b = appendEscaped(b, n.pattern)
		} else {
			b = appendEscaped(b, e.Value)
		}
		if n != nil {
			lv = n.children
		}
	}
	return append(b, tl.suffix...)
}

// wildcardMatch reports whether value matches a pattern split on "*" (at least two parts):
// it starts with the first part, ends with the last, and holds the middle ones in order
// between them, each "*" matching any run of characters, possibly empty. It is
// envoyproxy/ratelimit's matching (src/config/config_impl.go, wildcardMatch), without
// allocations.
func wildcardMatch(parts []string, value string) bool {
	first, last := parts[0], parts[len(parts)-1]
	if len(value) < len(first)+len(last) || !strings.HasPrefix(value, first) || !strings.HasSuffix(value, last) {
		return false
	}
	rest := value[len(first) : len(value)-len(last)]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, part)
		if i < 0 {
			return false
		}
		rest = rest[i+len(part):]
	}
	return true
}
