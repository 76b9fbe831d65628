package authn

import "testing"

func TestPassable(t *testing.T) {
	ok := Principal{Subject: "alice@example.com", Tenant: "acme", Roles: []string{"user", "Org Admin"},
		Scopes: []string{"orders:read", "https://api.example.com/x"}, CredentialID: "k_1", Tier: "paid"}
	if !ok.Passable() {
		t.Fatalf("%+v: not passable, want passable", ok)
	}
	if !(Principal{Subject: "bob"}).Passable() {
		t.Error("a subject alone: not passable, want passable (nil roles and scopes)")
	}
	for name, p := range map[string]Principal{
		"comma in a role":      {Subject: "a", Roles: []string{"user,admin"}},
		"empty role":           {Subject: "a", Roles: []string{""}},
		"space in a scope":     {Subject: "a", Scopes: []string{"orders:read admin:write"}},
		"empty scope":          {Subject: "a", Scopes: []string{""}},
		"quote in a scope":     {Subject: "a", Scopes: []string{`a"b`}},
		"backslash in a scope": {Subject: "a", Scopes: []string{`a\b`}},
		"non-ASCII scope":      {Subject: "a", Scopes: []string{"orders:read\u00a0admin:write"}},
		"CR LF in the subject": {Subject: "a\r\nx-warden-roles: admin"},
		"NUL in the tenant":    {Subject: "a", Tenant: "acme\x00"},
		"DEL in the tier":      {Subject: "a", Tier: "paid\x7f"},
		"tab in the jti":       {Subject: "a", CredentialID: "j\t1"},
		"LF in a role":         {Subject: "a", Roles: []string{"user\nadmin"}},
	} {
		if p.Passable() {
			t.Errorf("%s: %+v passable, want not", name, p)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = ok.Passable() }); n != 0 {
		t.Errorf("Passable: %v allocations, want 0", n)
	}
}
