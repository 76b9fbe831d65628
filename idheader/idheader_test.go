package idheader_test

import (
	"testing"

	"github.com/wardenhq/warden/idheader"
)

func TestReserved(t *testing.T) {
	for _, n := range idheader.Names() {
		if !idheader.Reserved(n) {
			t.Errorf("Reserved(%q) = false for a header Warden sets", n)
		}
	}
	for name, want := range map[string]bool{
		"x-warden-subject": true, "X-Warden-Subject": true, "X-WARDEN-IMPERSONATE": true, "x-warden-": true,
		"x-warden": false, "x-wardens-subject": false, "authorization": false, "": false, "x-api-key": false,
	} {
		if got := idheader.Reserved(name); got != want {
			t.Errorf("Reserved(%q): got %v, want %v", name, got, want)
		}
	}
}

func TestSet(t *testing.T) {
	def := idheader.Default()
	if def.Names() != idheader.Names() || def.Prefix() != idheader.Prefix {
		t.Errorf("Default() = %v %q, want the package's names", def.Names(), def.Prefix())
	}
	s, err := idheader.New(idheader.Config{Prefix: "X-Auth-", Subject: "X-User-ID", Tier: "x-plan"})
	if err != nil {
		t.Fatal(err)
	}
	want := [idheader.Count]string{"x-user-id", "x-auth-tenant", "x-auth-roles", "x-auth-scopes", "x-auth-auth-method", "x-auth-credential-id", "x-plan"}
	if s.Names() != want {
		t.Errorf("names: got %v, want %v", s.Names(), want)
	}
	for name, reserved := range map[string]bool{
		"X-User-Id": true, "x-auth-anything": true, "x-plan": true, "x-warden-subject": false, "x-user": false, "x-plans": false,
	} {
		if got := s.Reserved(name); got != reserved {
			t.Errorf("Reserved(%q): got %v, want %v", name, got, reserved)
		}
	}
	for _, c := range []idheader.Config{
		{Subject: "x user"}, {Prefix: ":"}, {Subject: "x-a", Tenant: "X-A"}, {Tier: ":authority"},
	} {
		if _, err := idheader.New(c); err == nil {
			t.Errorf("New(%+v): error = nil, want one", c)
		}
	}
}

func TestIsNameFolds(t *testing.T) {
	s := idheader.Default()
	for name, want := range map[string]bool{
		"x-warden-tier": true, "X-Warden-Tier": true, "x-warden-tie": false, "x-warden-tiers": false,
	} {
		if got := s.IsName(name); got != want {
			t.Errorf("IsName(%q): got %v, want %v", name, got, want)
		}
	}
	k, err := idheader.New(idheader.Config{Tier: "x-k"})
	if err != nil {
		t.Fatal(err)
	}
	if !k.IsName("x-\u212a") { // 5 bytes, equal in any case to the 3-byte x-k
		t.Error(`IsName("x-\u212a") with tier x-k: got false, want true (strings.EqualFold)`)
	}
}

// BenchmarkReserved is what the ext_authz path asks of every header of a request (twice).
func BenchmarkReserved(b *testing.B) {
	s := idheader.Default()
	headers := []string{"authorization", "user-agent", "x-request-id", "x-forwarded-proto", "accept", "x-envoy-expected-rq-timeout-ms", "traceparent", "x-warden-subject"}
	b.ReportAllocs()
	for b.Loop() {
		for _, h := range headers {
			_ = s.Reserved(h)
		}
	}
}
