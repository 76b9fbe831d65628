package authz

import (
	"fmt"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/interpreter"

	"github.com/wardenhq/warden/authn"
)

// Conditions are CEL expressions that must evaluate to a bool. They see these variables:
//
//	principal.subject, principal.tenant, principal.method, principal.credential_id,
//	principal.tier: string
//	principal.roles, principal.scopes: list(string)  (nil scopes read as [])
//	principal.claims: map(string, string)
//	resource.type, resource.id, resource.owner, resource.tenant: string
//	resource.attributes: map(string, string)
//	request.action, request.resource, request.verb, request.route: string
//	(request.route is the matched route's name in Check, "" in Authorize)
//
// They are compiled once by Compile; a policy without conditions never builds a CEL
// environment, and Authorize touches CEL only when a matching grant or rule has a condition.
// An evaluation error (a missing map key, say) counts as false.

type condition struct {
	src string
	prg cel.Program
}

func newCELEnv() (*cel.Env, error) {
	str, strs, smap := cel.StringType, cel.ListType(cel.StringType), cel.MapType(cel.StringType, cel.StringType)
	return cel.NewEnv(
		cel.Variable("principal.subject", str),
		cel.Variable("principal.tenant", str),
		cel.Variable("principal.method", str),
		cel.Variable("principal.credential_id", str),
		cel.Variable("principal.tier", str),
		cel.Variable("principal.roles", strs),
		cel.Variable("principal.scopes", strs),
		cel.Variable("principal.claims", smap),
		cel.Variable("resource.type", str),
		cel.Variable("resource.id", str),
		cel.Variable("resource.owner", str),
		cel.Variable("resource.tenant", str),
		cel.Variable("resource.attributes", smap),
		cel.Variable("request.action", str),
		cel.Variable("request.resource", str),
		cel.Variable("request.verb", str),
		cel.Variable("request.route", str),
	)
}

func compileCondition(env *cel.Env, src string) (*condition, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("condition must be a bool, got %s", ast.OutputType())
	}
	prg, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &condition{src: src, prg: prg}, nil
}

// request is what Authorize knows of the request besides the principal and the resource.
type request struct {
	action, resource, verb, route string
}

// evalInput is the CEL activation: it resolves variables lazily from plain values, so an
// expression pays only for the variables it reads. Policy pools them; what remains per
// evaluation is the boxing of each string variable read (measured: 2 allocs, 32 B for a
// one-variable condition).
type evalInput struct {
	p   authn.Principal
	r   Resource
	req request
}

var _ interpreter.Activation = (*evalInput)(nil)

func (in *evalInput) ResolveName(name string) (any, bool) {
	switch name {
	case "principal.subject":
		return in.p.Subject, true
	case "principal.tenant":
		return in.p.Tenant, true
	case "principal.method":
		return in.p.Method.String(), true
	case "principal.credential_id":
		return in.p.CredentialID, true
	case "principal.tier":
		return in.p.Tier, true
	case "principal.roles":
		return nonNil(in.p.Roles), true
	case "principal.scopes":
		return nonNil(in.p.Scopes), true
	case "principal.claims":
		return nonNilMap(in.p.Claims), true
	case "resource.type":
		return in.r.Type, true
	case "resource.id":
		return in.r.ID, true
	case "resource.owner":
		return in.r.Owner, true
	case "resource.tenant":
		return in.r.Tenant, true
	case "resource.attributes":
		return nonNilMap(in.r.Attributes), true
	case "request.action":
		return in.req.action, true
	case "request.resource":
		return in.req.resource, true
	case "request.verb":
		return in.req.verb, true
	case "request.route":
		return in.req.route, true
	}
	return nil, false
}

func (in *evalInput) Parent() interpreter.Activation { return nil }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// eval reports whether the condition holds; an error or a non-bool result is false.
func (c *condition) eval(in *evalInput) bool {
	out, _, err := c.prg.Eval(in)
	if err != nil {
		return false
	}
	b, ok := out.Value().(bool)
	return ok && b
}
