package authz

import (
	"cmp"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/wardenhq/warden/authn"
)

// RouteTable matches a method and a request path to a Route. It is part of a compiled Policy:
// immutable and safe for concurrent use.
//
// Matching:
//   - The query string (from the first `?`) is ignored. A `#` makes the path malformed.
//   - The path is checked before matching and refused (MalformedRequest) rather than
//     normalized when it could mean something else to another parser: not starting with `/`,
//     longer than MaxPathLength or with more than MaxSegments segments, an empty segment
//     (`//`), a `.` or `..` segment raw or percent-encoded (`%2e%2e`), a `\`, `;` or control
//     character raw or encoded, an encoded `/` (`%2F`), an encoded `%` (`%25`, so a backend
//     that decodes twice cannot be fed `%2e%2e`), invalid percent-encoding, invalid UTF-8.
//   - A single trailing slash is removed (TrailingSlash "strip", the default) or refused
//     ("strict"). The root path `/` is kept.
//   - Segments are compared after percent-decoding, case-sensitively: `/v1/%75sers` is
//     `/v1/users`.
//   - Precedence among templates, segment by segment from the left: a literal segment beats a
//     parameter, which beats a catch-all. If the preferred branch leads to no route the next
//     one is tried, so the most specific template wins; each trie node is visited at most once
//     per lookup.
//   - Any template that matches (catch-alls included) beats every prefix. Among prefixes the
//     longest (in segments) that matches wins.
//   - Methods, in order: routes of the request's method (templates, then prefixes); for HEAD,
//     then GET routes (HEAD follows GET unless a HEAD route matches); then routes with method
//     `*`. The first of these groups with a match decides.
//   - Two templates with the same method and the same shape (the same literals and parameter
//     positions, whatever the parameter names) are a configuration error; so are two prefixes
//     with the same method and segments, and a prefix and a catch-all template with the same
//     method and literals before the catch-all (`/api/` and `/api/{rest...}`), which differ
//     only on `/api` itself.
type RouteTable struct {
	methods     []methodTrie
	any         *node
	n           int
	prefixes    int // prefix routes: Match walks for them only when there are some
	stripSlash  bool
	maxPath     int
	maxSegments int
}

type methodTrie struct {
	method string
	root   *node
}

type node struct {
	lits     []litEdge
	param    *node
	route    *Route // a template ends here
	catchAll *Route // a template ends with {name...} here
	prefix   *Route // a prefix ends here
}

type litEdge struct {
	seg  string
	next *node
}

// Len returns the number of routes.
func (t *RouteTable) Len() int { return t.n }

func compileRoutes(cfg Config, pl *Policy, e *errs) RouteTable {
	t := RouteTable{
		stripSlash:  cfg.TrailingSlash != "strict",
		maxPath:     positive(cfg.MaxPathLength, DefaultMaxPathLength),
		maxSegments: positive(cfg.MaxSegments, DefaultMaxSegments),
	}
	if cfg.TrailingSlash != "" && cfg.TrailingSlash != "strip" && cfg.TrailingSlash != "strict" {
		e.add("authz.trailing_slash", `%q: want "strip" or "strict"`, cfg.TrailingSlash)
	}
	if cfg.MaxPathLength < 0 {
		e.add("authz.max_path_length", "must not be negative")
	}
	if cfg.MaxSegments < 0 {
		e.add("authz.max_segments", "must not be negative")
	}
	names := map[string]int{}
	where := map[*Route]int{}
	for i, rc := range cfg.Routes {
		path := idx("authz.routes", i)
		r, segs, ok := compileRoute(rc, path, pl, t.maxSegments, e)
		if !ok {
			continue
		}
		if j, dup := names[rc.Name]; dup {
			e.add(path+".name", "%q is already the name of authz.routes[%d]", rc.Name, j)
			continue
		}
		names[rc.Name] = i
		if prev := t.insert(r, segs); prev != nil {
			field := ".path"
			if r.Prefix != "" {
				field = ".prefix"
			}
			e.add(path+field, "%s %s has the same shape as authz.routes[%d] (%s %s)", r.Method, r.pattern(), where[prev], prev.Method, prev.pattern())
			continue
		}
		where[r] = i
		t.n++
		if r.Prefix != "" {
			t.prefixes++
		}
	}
	return t
}

var methodBits = map[string]authn.Method{"api_key": authn.MethodAPIKey, "jwt": authn.MethodJWT, "mtls": authn.MethodMTLS, "oauth2": authn.MethodOAuth2}

func compileRoute(rc RouteConfig, path string, pl *Policy, maxSeg int, e *errs) (*Route, []segment, bool) {
	before := len(*e)
	r := &Route{
		Name: rc.Name, Method: rc.Method, Path: rc.Path, Action: rc.Action, ResourceType: rc.ResourceType,
		OwnerParam: rc.OwnerParam, TenantParam: rc.TenantParam, IDParam: rc.IDParam, SkipOwnership: rc.SkipOwnership,
		Scopes: rc.Scopes, RequiredScopes: rc.RequiredScopes, Public: rc.Public, Webhook: rc.Webhook,
		ownerIdx: -1, tenantIdx: -1, idIdx: -1,
	}
	if !validName(rc.Name) {
		e.add(path+".name", "%q: a route name is 1-64 characters of [A-Za-z0-9_.-]", rc.Name)
	}
	if !validMethod(rc.Method) {
		e.add(path+".method", "%q: want an upper-case HTTP method or *", rc.Method)
	}
	var segs []segment
	var err error
	switch {
	case rc.Path == "" && rc.Prefix == "":
		e.add(path+".path", "required: a path template, or a prefix")
	case rc.Path != "" && rc.Prefix != "":
		e.add(path+".prefix", "set either path (a template) or prefix, not both")
	case rc.Prefix != "":
		r.Prefix = rc.Prefix
		if segs, err = parsePrefix(rc.Prefix, maxSeg); err != nil {
			e.addErr(path+".prefix", err)
			break
		}
		r.Prefix = "/" + joinLiterals(segs)
	default:
		if segs, err = parseTemplate(rc.Path, maxSeg); err != nil {
			e.addErr(path+".path", err)
		}
	}
	kinds := map[string]segKind{}
	for _, s := range segs {
		if s.kind != segLiteral {
			kinds[s.text] = s.kind
			r.ParamNames = append(r.ParamNames, s.text)
		}
	}
	if rc.Public && rc.Webhook != "" {
		e.add(path+".webhook", "a route is either public or a webhook")
	}
	if rc.Webhook != "" && !validName(rc.Webhook) {
		e.add(path+".webhook", "%q is not a webhook source name", rc.Webhook)
	}
	guarded := !rc.Public && rc.Webhook == ""
	rc.Scopes.problems(func(field, msg string) { e.add(path+".scopes."+field, "%s", msg) })
	if !rc.Scopes.IsZero() && !guarded {
		e.add(path+".scopes", "public and webhook routes take no credential scopes")
	}
	scopeOnly := guarded && rc.Action == "" && !rc.Scopes.IsZero()
	if scopeOnly {
		for _, f := range [...]struct{ field, v string }{{"resource_type", rc.ResourceType}, {"owner_param", rc.OwnerParam}, {"tenant_param", rc.TenantParam}, {"id_param", rc.IDParam}} {
			if f.v != "" {
				e.add(path+"."+f.field, "a route without an action is decided by its scopes alone and has no resource: set action, or remove %s", f.field)
			}
		}
	}
	if rc.Action != "" || guarded && !scopeOnly {
		rt, _, ok := splitAction(rc.Action)
		if !ok {
			e.add(path+".action", "%q: want resource:verb without wildcards", rc.Action)
		}
		if r.ResourceType == "" {
			r.ResourceType = rt
		}
	}
	if rc.ResourceType != "" && !validName(rc.ResourceType) {
		e.add(path+".resource_type", "%q is not a resource type", rc.ResourceType)
	}
	param := func(field, name string, dst *int) {
		if name == "" {
			return
		}
		switch k, ok := kinds[name]; {
		case !ok:
			e.add(path+"."+field, "%q is not a parameter of %s", name, r.pattern())
		case k == segCatchAll:
			e.add(path+"."+field, "%q is a catch-all; its value spans segments and cannot name a resource", name)
		default:
			*dst = indexOf(r.ParamNames, name)
		}
	}
	param("owner_param", rc.OwnerParam, &r.ownerIdx)
	param("tenant_param", rc.TenantParam, &r.tenantIdx)
	param("id_param", rc.IDParam, &r.idIdx)
	if rule := pl.ownership[r.ResourceType]; rule != nil && guarded && !scopeOnly && !rc.SkipOwnership {
		switch rule.res.kind {
		case resOwner:
			if rc.OwnerParam == "" {
				e.add(path+".owner_param", "resource type %q has an ownership rule: name the path parameter that holds the owner, or set skip_ownership", r.ResourceType)
			}
		case resID:
			if rc.IDParam == "" {
				e.add(path+".id_param", "resource type %q is owned through its id: name the path parameter that holds it, or set skip_ownership", r.ResourceType)
			}
		case resAttr:
			e.add(path+".skip_ownership", "resource type %q is owned through an attribute, which a route cannot supply: set skip_ownership and authorize in the backend", r.ResourceType)
		}
	}
	for i, s := range rc.RequiredScopes {
		if s == "" || strings.ContainsFunc(s, func(c rune) bool { return c <= ' ' || c == 0x7f }) {
			e.add(idx(path+".required_scopes", i), "%q is not a scope", s)
		}
	}
	for i, m := range rc.AllowedMethods {
		bit, ok := methodBits[m]
		if !ok {
			e.add(idx(path+".allowed_methods", i), "%q: want api_key, jwt, mtls or oauth2", m)
			continue
		}
		r.methods |= 1 << bit
		r.AllowedMethods = append(r.AllowedMethods, bit)
	}
	for i, h := range rc.StripHeaders {
		if !validHeaderName(h) {
			e.add(idx(path+".strip_headers", i), "%q is not a header name", h)
			continue
		}
		r.StripHeaders = append(r.StripHeaders, strings.ToLower(h))
	}
	for i, rl := range rc.RateLimits {
		lpath := idx(path+".rate_limits", i)
		spec := RateLimitSpec{Domain: rl.Domain}
		if rl.Domain == "" {
			e.add(lpath+".domain", "required")
		}
		if len(rl.Descriptors) == 0 {
			e.add(lpath+".descriptors", "at least one entry")
		}
		for j, d := range rl.Descriptors {
			dpath := idx(lpath+".descriptors", j)
			ds, err := compileDescriptor(d, r.ParamNames)
			if err != nil {
				e.addErr(dpath, err)
				continue
			}
			spec.Entries = append(spec.Entries, ds)
		}
		r.RateLimits = append(r.RateLimits, spec)
	}
	return r, segs, len(*e) == before
}

func compileDescriptor(d DescriptorConfig, params []string) (DescriptorSpec, error) {
	ds := DescriptorSpec{Key: d.Key, Value: d.Value, ParamIndex: -1}
	if d.Key == "" {
		return ds, fmt.Errorf("key is required")
	}
	if (d.Value == "") == (d.From == "") {
		return ds, fmt.Errorf("set exactly one of value and from")
	}
	switch f := d.From; {
	case f == "":
		ds.Source = FromLiteral
	case f == "principal.subject":
		ds.Source = FromPrincipalSubject
	case f == "principal.tenant":
		ds.Source = FromPrincipalTenant
	case f == "principal.tier":
		ds.Source = FromPrincipalTier
	case f == "route.name":
		ds.Source = FromRouteName
	case strings.HasPrefix(f, "param."):
		ds.Source, ds.Name = FromParam, f[len("param."):]
		if ds.ParamIndex = indexOf(params, ds.Name); ds.ParamIndex < 0 {
			return ds, fmt.Errorf("from %q: no such path parameter", f)
		}
	case strings.HasPrefix(f, "header.") && validHeaderName(f[len("header."):]):
		ds.Source, ds.Name = FromHeader, strings.ToLower(f[len("header."):])
	default:
		return ds, fmt.Errorf("from %q: want principal.subject, principal.tenant, principal.tier, route.name, param.<name> or header.<name>", f)
	}
	return ds, nil
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func validMethod(m string) bool {
	if m == "*" {
		return true
	}
	if m == "" || len(m) > 20 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 'A' || m[i] > 'Z' {
			return false
		}
	}
	return true
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// joinLiterals joins literal segments with slashes.
func joinLiterals(segs []segment) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(s.text)
	}
	return b.String()
}

// pattern is the route's template, or its prefix followed by "/ (prefix)", for messages.
func (r *Route) pattern() string {
	if r.Prefix == "" {
		return r.Path
	}
	return strings.TrimSuffix(r.Prefix, "/") + "/ (prefix)"
}

// insert adds r under segs; it returns the route already there if the shape is taken.
func (t *RouteTable) insert(r *Route, segs []segment) *Route {
	var root **node
	if r.Method == "*" {
		root = &t.any
	} else {
		i := 0
		for i < len(t.methods) && t.methods[i].method != r.Method {
			i++
		}
		if i == len(t.methods) {
			t.methods = append(t.methods, methodTrie{method: r.Method})
		}
		root = &t.methods[i].root
	}
	if *root == nil {
		*root = &node{}
	}
	n := *root
	for _, s := range segs {
		switch s.kind {
		case segLiteral:
			n = n.literal(s.text)
		case segParam:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case segCatchAll:
			if prev := cmp.Or(n.catchAll, n.prefix); prev != nil {
				return prev
			}
			n.catchAll = r
			return nil
		}
	}
	if r.Prefix != "" {
		if prev := cmp.Or(n.prefix, n.catchAll); prev != nil {
			return prev
		}
		n.prefix = r
		return nil
	}
	if n.route != nil {
		return n.route
	}
	n.route = r
	return nil
}

// literal returns n's child for literal segment seg, adding it if needed.
func (n *node) literal(seg string) *node {
	for _, l := range n.lits {
		if l.seg == seg {
			return l.next
		}
	}
	next := &node{}
	n.lits = append(n.lits, litEdge{seg: seg, next: next})
	return next
}

// Match finds the route for method and path (a request target: the query is ignored) and
// fills ps with its parameters. It returns (route, OK), (nil, NoRoute) or
// (nil, MalformedRequest). It does not allocate unless a matched segment is percent-encoded.
func (t *RouteTable) Match(method, path string, ps *Params) (*Route, Reason) {
	ps.reset()
	p, enc, ok := t.clean(path)
	if !ok {
		return nil, MalformedRequest
	}
	rest := p[1:]
	r := t.matchIn(t.root(method), rest, enc, ps)
	if r == nil && method == "HEAD" {
		r = t.matchIn(t.root("GET"), rest, enc, ps)
	}
	if r == nil {
		r = t.matchIn(t.any, rest, enc, ps)
	}
	if r == nil {
		return nil, NoRoute
	}
	ps.route = r
	return r, OK
}

// root returns the trie of method's routes, or nil.
func (t *RouteTable) root(method string) *node {
	for i := range t.methods {
		if t.methods[i].method == method {
			return t.methods[i].root
		}
	}
	return nil
}

// matchIn matches rest in the trie n: templates first, then the longest prefix.
func (t *RouteTable) matchIn(n *node, rest string, enc bool, ps *Params) *Route {
	if n == nil {
		return nil
	}
	if r := n.match(rest, enc, ps); r != nil {
		return r
	}
	if t.prefixes == 0 {
		return nil
	}
	return n.longestPrefix(rest, enc)
}

// longestPrefix follows literal edges from n along rest and returns the prefix route of the
// deepest node that has one.
func (n *node) longestPrefix(rest string, enc bool) *Route {
	best := n.prefix
	for rest != "" {
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		if enc {
			seg = unescape(seg)
		}
		var next *node
		for j := range n.lits {
			if n.lits[j].seg == seg {
				next = n.lits[j].next
				break
			}
		}
		if next == nil {
			break
		}
		if n = next; n.prefix != nil {
			best = n.prefix
		}
	}
	return best
}

// match matches rest (the path after the slash that led to n; "" at the end) below n. enc
// says whether the path holds percent-encoding.
func (n *node) match(rest string, enc bool, ps *Params) *Route {
	if rest == "" {
		return n.route
	}
	i := 0
	for i < len(rest) && rest[i] != '/' {
		i++
	}
	seg, tail, more := rest[:i], "", i < len(rest)
	if more {
		tail = rest[i+1:]
	}
	if enc {
		seg = unescape(seg)
	}
	for j := range n.lits {
		if n.lits[j].seg == seg {
			if r := n.lits[j].next.next(tail, more, enc, ps); r != nil {
				return r
			}
			break
		}
	}
	if n.param != nil && ps.n < MaxParams {
		ps.vals[ps.n] = seg
		ps.n++
		if r := n.param.next(tail, more, enc, ps); r != nil {
			return r
		}
		ps.n--
	}
	if n.catchAll != nil && ps.n < MaxParams {
		if enc {
			rest = unescape(rest)
		}
		ps.vals[ps.n] = rest
		ps.n++
		return n.catchAll
	}
	return nil
}

func (n *node) next(tail string, more, enc bool, ps *Params) *Route {
	if !more {
		return n.route
	}
	return n.match(tail, enc, ps)
}

// clean applies the path rules documented on RouteTable. It returns the path without query
// and without a stripped trailing slash, and whether it holds percent-encoding, or false. It
// does not allocate.
func (t *RouteTable) clean(p string) (clean string, encoded, ok bool) {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' {
			p = p[:i]
			break
		}
	}
	if len(p) == 0 || p[0] != '/' || len(p) > t.maxPath {
		return "", false, false
	}
	if len(p) > 1 && p[len(p)-1] == '/' {
		if !t.stripSlash {
			return "", false, false
		}
		p = p[:len(p)-1]
	}
	if p == "/" {
		return p, false, true
	}
	segs, start := 0, 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) && p[i] != '/' {
			continue
		}
		segs++
		ok, enc := validSegment(p[start:i])
		if !ok || segs > t.maxSegments {
			return "", false, false
		}
		encoded = encoded || enc
		start = i + 1
	}
	return p, encoded, true
}

// validSegment checks one raw path segment: non-empty, valid percent-encoding, valid UTF-8,
// and neither raw nor decoded holds a forbidden byte or forms a dot segment. encoded reports
// a `%`.
func validSegment(s string) (ok, encoded bool) {
	if s == "" {
		return false, false
	}
	dots, n, ascii := 0, 0, true // decoded dots and decoded length
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) {
				return false, true
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return false, true
			}
			c = hi<<4 | lo
			if c == '/' || c == '%' {
				return false, true
			}
			encoded = true
			i += 2
		} else if c >= 0x80 {
			ascii = false
		}
		if c < 0x20 || c == 0x7f || c == '\\' || c == ';' || c == '#' {
			return false, encoded
		}
		if c == '.' {
			dots++
		}
		n++
	}
	if dots == n && n <= 2 {
		return false, encoded
	}
	// Raw bytes only: decoded values are checked where they matter (Resource).
	return ascii || utf8.ValidString(s), encoded
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescape percent-decodes a segment that validSegment accepted. It allocates only when s
// holds a `%`.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, _ := unhex(s[i+1])
			lo, _ := unhex(s[i+2])
			b = append(b, hi<<4|lo)
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}
