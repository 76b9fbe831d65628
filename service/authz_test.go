package service_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wardenhq/warden/authz"
	wardenv1 "github.com/wardenhq/warden/gen/warden/v1"
	"github.com/wardenhq/warden/service"
)

func policy(t *testing.T) *authz.Policy {
	t.Helper()
	p, err := authz.Compile(authz.Config{
		Roles: map[string]authz.RoleConfig{
			"user":    {Permissions: []string{"orders:read", "orders:write"}},
			"support": {Permissions: []string{"orders:read"}},
			"admin":   {Permissions: []string{"*"}, CrossTenant: true},
		},
		Ownership: map[string]authz.OwnershipConfig{
			"order": {Overrides: []authz.OverrideConfig{{Role: "admin", Verbs: []string{"*"}}, {Role: "support", Verbs: []string{"read"}}}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuthorize(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Policy: policy(t)}}))
	alice := &wardenv1.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"user"}}
	order := func(owner, tenant string) *wardenv1.Resource {
		return &wardenv1.Resource{Type: "order", Id: "o-1", Owner: owner, Tenant: tenant}
	}
	tests := []struct {
		name       string
		p          *wardenv1.Principal
		action     string
		res        *wardenv1.Resource
		allowed    bool
		reason     wardenv1.DenyReason
		httpStatus int32
	}{
		{"owner reads", alice, "orders:read", order("alice", "acme"), true, 0, 200},
		{"not owner", alice, "orders:read", order("bob", "acme"), false, wardenv1.DenyReason_DENY_REASON_NOT_OWNER, 404},
		{"other tenant", alice, "orders:read", order("alice", "globex"), false, wardenv1.DenyReason_DENY_REASON_OTHER_TENANT, 404},
		{"support overrides ownership to read", &wardenv1.Principal{Subject: "sam", Tenant: "acme", Roles: []string{"support"}},
			"orders:read", order("bob", "acme"), true, 0, 200},
		{"support may not write", &wardenv1.Principal{Subject: "sam", Tenant: "acme", Roles: []string{"support"}},
			"orders:write", order("bob", "acme"), false, wardenv1.DenyReason_DENY_REASON_MISSING_ROLE, 403},
		{"admin crosses tenants", &wardenv1.Principal{Subject: "root", Tenant: "ops", Roles: []string{"admin"}},
			"orders:write", order("bob", "globex"), true, 0, 200},
		{"scope narrows the role", &wardenv1.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"user"}, Scoped: true, Scopes: []string{"orders:read"}},
			"orders:write", order("alice", "acme"), false, wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, 403},
		{"empty scope list narrows to nothing", &wardenv1.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"user"}, Scoped: true},
			"orders:read", order("alice", "acme"), false, wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, 403},
		{"malformed resource id", alice, "orders:read", &wardenv1.Resource{Type: "order", Id: "../o-2", Owner: "alice", Tenant: "acme"},
			false, wardenv1.DenyReason_DENY_REASON_MALFORMED_RESOURCE, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Authorize(context.Background(), &wardenv1.AuthorizeRequest{
				Subject: &wardenv1.AuthorizeRequest_Principal{Principal: tt.p}, Action: tt.action, Resource: tt.res})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Allowed != tt.allowed || resp.Reason != tt.reason || resp.HttpStatus != tt.httpStatus {
				t.Errorf("got allowed=%v reason=%v status=%d; want %v %v %d", resp.Allowed, resp.Reason, resp.HttpStatus, tt.allowed, tt.reason, tt.httpStatus)
			}
		})
	}

	resp, err := c.Authorize(context.Background(), &wardenv1.AuthorizeRequest{Action: "orders:read", Resource: order("alice", "acme")})
	if err != nil || resp.Allowed || resp.Reason != wardenv1.DenyReason_DENY_REASON_NO_CREDENTIALS || resp.HttpStatus != 401 {
		t.Errorf("no subject: got %v, %v; want NO_CREDENTIALS 401", resp, err)
	}
	for _, bad := range []*wardenv1.AuthorizeRequest{
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: alice}, Resource: order("alice", "acme")},
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: alice}, Action: "orders:read"},
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: &wardenv1.Principal{}}, Action: "orders:read", Resource: order("a", "b")},
	} {
		if _, err := c.Authorize(context.Background(), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("malformed request %v: got %v, want INVALID_ARGUMENT", bad, err)
		}
	}
}

// required_scopes: plain OAuth 2.0 scopes, exact and case-sensitive, alone or before the action.
func TestAuthorizePlainScopes(t *testing.T) {
	c := serve(t, service.New(service.Config{Logger: quietLogger(), Deps: &service.Deps{Policy: policy(t)}}))
	token := &wardenv1.Principal{Subject: "svc", Scoped: true, Scopes: []string{"read", "write"}}
	alice := &wardenv1.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"user"}, Scoped: true, Scopes: []string{"openid", "orders"}}
	order := &wardenv1.Resource{Type: "order", Id: "o-1", Owner: "alice", Tenant: "acme"}
	need := func(anyOf, allOf []string) *wardenv1.ScopeRequirement {
		return &wardenv1.ScopeRequirement{AnyOf: anyOf, AllOf: allOf}
	}
	tests := []struct {
		name       string
		p          *wardenv1.Principal
		need       *wardenv1.ScopeRequirement
		action     string
		res        *wardenv1.Resource
		reason     wardenv1.DenyReason
		httpStatus int32
	}{
		{"read write holds read", token, need([]string{"read"}, nil), "", nil, 0, 200},
		{"Read is not read", token, need([]string{"Read"}, nil), "", nil, wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, 403},
		{"all of", token, need(nil, []string{"read", "write"}), "", nil, 0, 200},
		{"all of, one missing", token, need(nil, []string{"read", "admin"}), "", nil, wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, 403},
		{"any of", token, need([]string{"admin", "write"}, nil), "", nil, 0, 200},
		{"no scopes", &wardenv1.Principal{Subject: "svc"}, need([]string{"read"}, nil), "", nil, wardenv1.DenyReason_DENY_REASON_MISSING_SCOPE, 403},
		{"scopes then the role", alice, need([]string{"orders"}, nil), "orders:write", order, 0, 200},
		{"plain scopes do not narrow the role", alice, nil, "orders:write", order, 0, 200},
		{"scopes do not grant a role", token, need([]string{"read"}, nil), "orders:read", order, wardenv1.DenyReason_DENY_REASON_MISSING_ROLE, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := c.Authorize(context.Background(), &wardenv1.AuthorizeRequest{
				Subject: &wardenv1.AuthorizeRequest_Principal{Principal: tt.p}, RequiredScopes: tt.need, Action: tt.action, Resource: tt.res})
			if err != nil {
				t.Fatal(err)
			}
			if resp.Allowed != (tt.reason == 0) || resp.Reason != tt.reason || resp.HttpStatus != tt.httpStatus {
				t.Errorf("got allowed=%v reason=%v status=%d; want reason %v status %d", resp.Allowed, resp.Reason, resp.HttpStatus, tt.reason, tt.httpStatus)
			}
		})
	}
	for _, bad := range []*wardenv1.AuthorizeRequest{
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: token}, RequiredScopes: need([]string{"read write"}, nil)},
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: token}, RequiredScopes: need(nil, []string{""})},
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: token}, RequiredScopes: need(nil, make([]string, 65))},
		{Subject: &wardenv1.AuthorizeRequest_Principal{Principal: token}, RequiredScopes: need(nil, nil)},
	} {
		_, err := c.Authorize(context.Background(), bad)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("malformed request %v: got %v, want INVALID_ARGUMENT", bad, err)
		}
	}
}
