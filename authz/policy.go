package authz

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"

	"github.com/wardenhq/warden/authn"
)

// Policy is a compiled Config: roles flattened through inheritance, permission sets as maps,
// ownership rules, CEL programs and the route table. It is immutable after Compile and safe
// for concurrent use by any number of goroutines; hot reload swaps the whole *Policy. The zero
// value is not usable: build one with Compile.
//
// Authorize and Check return a Decision value and do not allocate unless a CEL condition is
// evaluated (or a path segment is percent-encoded, in Check).
type Policy struct {
	roles        map[string]*role
	ownership    map[string]*ownerRule
	isolation    bool
	maxID        int
	defaultAllow bool
	routes       RouteTable
	inputs       sync.Pool // *evalInput, reused across CEL evaluations
}

type role struct {
	perms       permSet
	conds       []condGrant
	crossTenant bool
	includes    map[string]struct{} // this role and every role it inherits, transitively
}

type condGrant struct {
	perm string
	cond *condition
}

type ownerRule struct {
	res, prin field
	// overrides maps every role that includes an override role to the verbs it may do on
	// others' objects.
	overrides map[string]*verbSet
	cond      *condition
}

type verbSet struct {
	all   bool
	verbs map[string]struct{}
}

func (v *verbSet) has(verb string) bool {
	if v.all {
		return true
	}
	_, ok := v.verbs[verb]
	return ok
}

// Compile validates cfg and compiles it. On error it returns every problem found, joined with
// a fielderr.List; each is a *fielderr.Error whose Path names the field (`authz.roles.x.permissions[1]`).
func Compile(cfg Config) (*Policy, error) {
	var e errs
	pl := &Policy{
		roles:        make(map[string]*role, len(cfg.Roles)),
		ownership:    make(map[string]*ownerRule, len(cfg.Ownership)),
		isolation:    !cfg.DisableTenantIsolation,
		maxID:        positive(cfg.MaxIDLength, DefaultMaxIDLength),
		defaultAllow: cfg.DefaultAllow,
	}
	if cfg.MaxIDLength < 0 {
		e.add("authz.max_id_length", "must not be negative")
	}
	cc := &celCompiler{}
	pl.compileRoles(cfg.Roles, cc, &e)
	pl.compileOwnership(cfg.Ownership, cc, &e)
	pl.routes = compileRoutes(cfg, pl, &e)
	if len(e) > 0 {
		return nil, e.err()
	}
	return pl, nil
}

func positive(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// celCompiler builds the CEL environment on first use, so a policy without conditions never
// builds one.
type celCompiler struct {
	env *cel.Env
	err error
}

func (c *celCompiler) compile(src string) (*condition, error) {
	if c.env == nil && c.err == nil {
		c.env, c.err = newCELEnv()
	}
	if c.err != nil {
		return nil, c.err
	}
	return compileCondition(c.env, src)
}

func (pl *Policy) compileRoles(cfg map[string]RoleConfig, cc *celCompiler, e *errs) {
	names := slices.Sorted(maps.Keys(cfg))
	own := make(map[string]*role, len(cfg))
	for _, name := range names {
		rc := cfg[name]
		path := "authz.roles." + name
		if !validName(name) {
			e.add(path, "role name must be 1-64 characters of [A-Za-z0-9_.-]")
		}
		r := &role{crossTenant: rc.CrossTenant}
		for i, p := range rc.Permissions {
			if err := checkPermission(p); err != nil {
				e.addErr(idx(path+".permissions", i), err)
				continue
			}
			r.perms.add(p)
		}
		for i, cp := range rc.Conditional {
			cpath := idx(path+".conditional", i)
			if err := checkPermission(cp.Permission); err != nil {
				e.addErr(cpath+".permission", err)
			}
			if strings.TrimSpace(cp.When) == "" {
				e.add(cpath+".when", "a conditional permission needs a condition; use permissions for an unconditional one")
				continue
			}
			c, err := cc.compile(cp.When)
			if err != nil {
				e.addErr(cpath+".when", err)
				continue
			}
			r.conds = append(r.conds, condGrant{perm: cp.Permission, cond: c})
		}
		for i, parent := range rc.Inherits {
			if _, ok := cfg[parent]; !ok {
				e.add(idx(path+".inherits", i), "unknown role %q", parent)
			}
		}
		own[name] = r
	}
	// Cycles, then the transitive closure of each role.
	const (
		unseen = iota
		visiting
		done
	)
	state := make(map[string]int, len(cfg))
	var stack []string
	cyclic := false
	var visit func(name string)
	visit = func(name string) {
		state[name] = visiting
		stack = append(stack, name)
		for i, parent := range cfg[name].Inherits {
			if _, ok := cfg[parent]; !ok {
				continue
			}
			switch state[parent] {
			case visiting:
				start := slices.Index(stack, parent)
				cycle := append(slices.Clone(stack[start:]), parent)
				e.add(idx("authz.roles."+name+".inherits", i), "inheritance cycle %s", strings.Join(cycle, " -> "))
				cyclic = true
			case unseen:
				visit(parent)
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, name := range names {
		if state[name] == unseen {
			visit(name)
		}
	}
	if cyclic {
		return
	}
	for _, name := range names {
		flat := &role{includes: map[string]struct{}{}}
		var walk func(n string)
		walk = func(n string) {
			if _, ok := flat.includes[n]; ok || own[n] == nil {
				return
			}
			flat.includes[n] = struct{}{}
			r := own[n]
			flat.perms.merge(&r.perms)
			flat.conds = append(flat.conds, r.conds...)
			flat.crossTenant = flat.crossTenant || r.crossTenant
			for _, parent := range cfg[n].Inherits {
				walk(parent)
			}
		}
		walk(name)
		pl.roles[name] = flat
	}
}

func (pl *Policy) compileOwnership(cfg map[string]OwnershipConfig, cc *celCompiler, e *errs) {
	for _, typ := range slices.Sorted(maps.Keys(cfg)) {
		oc := cfg[typ]
		path := "authz.ownership." + typ
		if !validName(typ) {
			e.add(path, "resource type must be 1-64 characters of [A-Za-z0-9_.-]")
		}
		rule := &ownerRule{overrides: map[string]*verbSet{}}
		var err error
		if rule.res, err = parseResourceField(oc.ResourceField); err != nil {
			e.addErr(path+".resource_field", err)
		}
		if rule.prin, err = parsePrincipalField(oc.PrincipalField); err != nil {
			e.addErr(path+".principal_field", err)
		}
		for i, ov := range oc.Overrides {
			opath := idx(path+".overrides", i)
			if _, ok := pl.roles[ov.Role]; !ok {
				e.add(opath+".role", "unknown role %q", ov.Role)
				continue
			}
			if len(ov.Verbs) == 0 {
				e.add(opath+".verbs", `list the verbs the role may do on others' objects, or ["*"] for all`)
				continue
			}
			var vs verbSet
			for j, v := range ov.Verbs {
				switch {
				case v == "*":
					vs.all = true
				case validName(v):
					addTo(&vs.verbs, v)
				default:
					e.add(idx(opath+".verbs", j), "%q is not a verb", v)
				}
			}
			// Every role that includes the override role gets its verbs.
			for name, r := range pl.roles {
				if _, ok := r.includes[ov.Role]; !ok {
					continue
				}
				dst := rule.overrides[name]
				if dst == nil {
					dst = &verbSet{}
					rule.overrides[name] = dst
				}
				dst.all = dst.all || vs.all
				for v := range vs.verbs {
					addTo(&dst.verbs, v)
				}
			}
		}
		if strings.TrimSpace(oc.When) != "" {
			if rule.cond, err = cc.compile(oc.When); err != nil {
				e.addErr(path+".when", err)
			}
		}
		pl.ownership[typ] = rule
	}
}

// Authorize decides whether principal p may perform action (`resource:verb`) on res. A zero
// principal (empty Subject) is "no credentials" and is denied with NoCredentials.
//
// Checks run in this order, the first failure deciding the reason: principal present, action
// well formed, resource well formed, scopes, roles, tenant, ownership, conditions. The scope
// check is the narrowing of roles by the credential's `resource:verb` scopes (plain scopes
// such as `read` or `openid` narrow nothing; see AuthorizeScopes to require them).
func (pl *Policy) Authorize(p authn.Principal, action string, res Resource) Decision {
	return pl.authorize(&p, action, &res, "", false)
}

// AuthorizeScopes is Authorize with plain OAuth 2.0 scopes required first: after the principal
// check, need must be satisfied by p.Scopes (exact, case-sensitive; MissingScope if not, and
// MalformedRequest if need is not valid, see ScopeRequirement.Check). With an empty action
// the decision rests on the scopes alone, independent of roles and resources; otherwise
// Authorize's checks follow.
func (pl *Policy) AuthorizeScopes(p authn.Principal, need ScopeRequirement, action string, res Resource) Decision {
	if p.Subject == "" {
		return deny(NoCredentials)
	}
	if need.Check() != nil {
		return deny(MalformedRequest)
	}
	if !need.SatisfiedBy(p.Scopes) {
		return deny(MissingScope)
	}
	if action == "" {
		return allow()
	}
	return pl.authorize(&p, action, &res, "", false)
}

func (pl *Policy) authorize(p *authn.Principal, action string, res *Resource, route string, skipOwner bool) Decision {
	if p.Subject == "" {
		return deny(NoCredentials)
	}
	rt, verb, ok := splitAction(action)
	if !ok {
		return deny(MalformedRequest)
	}
	typ := res.Type
	if typ == "" {
		typ = rt
	} else if !validName(typ) {
		return deny(MalformedResource)
	}
	if !validValue(res.ID, pl.maxID) || !validValue(res.Owner, pl.maxID) || !validValue(res.Tenant, pl.maxID) {
		return deny(MalformedResource)
	}
	if narrowedOut(p.Scopes, action, rt, verb) {
		return deny(MissingScope)
	}
	granted, conditional := false, false
	for _, name := range p.Roles {
		r := pl.roles[name]
		if r == nil {
			continue
		}
		if r.perms.covers(action, rt, verb) {
			granted = true
			break
		}
		for i := 0; !conditional && i < len(r.conds); i++ {
			conditional = covers(r.conds[i].perm, action, rt, verb)
		}
	}
	if !granted && !conditional {
		return deny(MissingRole)
	}
	if pl.isolation && res.Tenant != "" && res.Tenant != p.Tenant && !pl.crossTenant(p.Roles) {
		return deny(OtherTenant)
	}
	rule := pl.ownership[typ]
	if rule != nil && !skipOwner && !rule.overridden(p.Roles, verb) {
		owner := rule.res.ofResource(res)
		if owner == "" {
			return deny(MalformedResource)
		}
		if mine := rule.prin.ofPrincipal(p); mine == "" || mine != owner {
			return deny(NotOwner)
		}
	}
	if granted && (rule == nil || rule.cond == nil) {
		return allow()
	}
	in, _ := pl.inputs.Get().(*evalInput)
	if in == nil {
		in = new(evalInput)
	}
	*in = evalInput{p: *p, r: *res, req: request{action: action, resource: rt, verb: verb, route: route}}
	in.r.Type = typ
	d := pl.conditions(in, granted, rule)
	*in = evalInput{} // drop references to the request's data before pooling
	pl.inputs.Put(in)
	return d
}

// conditions evaluates the conditional grants (when no unconditional one applied) and the
// ownership rule's condition.
func (pl *Policy) conditions(in *evalInput, granted bool, rule *ownerRule) Decision {
	if !granted {
		for _, name := range in.p.Roles {
			r := pl.roles[name]
			if r == nil {
				continue
			}
			for _, g := range r.conds {
				if covers(g.perm, in.req.action, in.req.resource, in.req.verb) && g.cond.eval(in) {
					granted = true
					break
				}
			}
			if granted {
				break
			}
		}
		if !granted {
			return deny(ConditionFailed)
		}
	}
	if rule != nil && rule.cond != nil && !rule.cond.eval(in) {
		return deny(ConditionFailed)
	}
	return allow()
}

func (pl *Policy) crossTenant(roles []string) bool {
	for _, name := range roles {
		if r := pl.roles[name]; r != nil && r.crossTenant {
			return true
		}
	}
	return false
}

func (o *ownerRule) overridden(roles []string, verb string) bool {
	for _, name := range roles {
		if vs := o.overrides[name]; vs != nil && vs.has(verb) {
			return true
		}
	}
	return false
}

// String describes the policy's size, for logs on reload.
func (pl *Policy) String() string {
	return fmt.Sprintf("authz.Policy{roles: %d, ownership rules: %d, routes: %d}", len(pl.roles), len(pl.ownership), pl.routes.Len())
}
