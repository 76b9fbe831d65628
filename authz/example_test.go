package authz_test

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/wardenhq/warden/authn"
	"github.com/wardenhq/warden/authz"
)

const exampleYAML = `
roles:
  customer:
    permissions: ["orders:read", "orders:write"]
  support:
    permissions: ["*:read"]
    cross_tenant: true
  admin:
    inherits: [support]
    permissions: ["*"]
  refunds:
    conditional:
      - permission: orders:refund
        when: 'resource.attributes.status == "paid"'
ownership:
  orders:
    resource_field: resource.owner
    principal_field: principal.subject
    overrides:
      - {role: support, verbs: [read]}
      - {role: admin, verbs: ["*"]}
routes:
  - name: get_order
    method: GET
    path: /v1/tenants/{tenant}/users/{user_id}/orders/{order_id}
    action: orders:read
    owner_param: user_id
    tenant_param: tenant
    id_param: order_id
    allowed_methods: [api_key, jwt]
    rate_limits:
      - domain: api
        descriptors:
          - {key: user, from: principal.subject}
          - {key: route, from: route.name}
  - name: health
    method: "*"
    path: /healthz
    public: true
`

func Example() {
	var cfg authz.Config
	dec := yaml.NewDecoder(strings.NewReader(exampleYAML))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		fmt.Println(err)
		return
	}
	pol, err := authz.Compile(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	alice := authn.Principal{Subject: "alice", Tenant: "acme", Roles: []string{"customer"}, Method: authn.MethodAPIKey}
	var ps authz.Params
	for _, path := range []string{
		"/v1/tenants/acme/users/alice/orders/o-1",
		"/v1/tenants/acme/users/bob/orders/o-2",
		"/v1/tenants/globex/users/alice/orders/o-3",
		"/v1/tenants/acme/users/alice/../bob/orders/o-2",
		"/v1/nothing/here",
	} {
		d := pol.Check(alice, "GET", path, &ps)
		fmt.Printf("%-48s %-5v %-18v %v\n", path, d.Allowed, d.Reason, d.Reason.Public())
	}
	// Output:
	// /v1/tenants/acme/users/alice/orders/o-1          true  ok                 ok
	// /v1/tenants/acme/users/bob/orders/o-2            false not_owner          not_found
	// /v1/tenants/globex/users/alice/orders/o-3        false other_tenant       not_found
	// /v1/tenants/acme/users/alice/../bob/orders/o-2   false malformed_request  invalid
	// /v1/nothing/here                                 false no_route           not_found
}
