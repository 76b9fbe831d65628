package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB, name string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: t0.AddDate(-10, 0, 0), NotAfter: t0.AddDate(1, 0, 0), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return testCA{c, key, pool}
}

type leafOpts struct {
	cn        string
	dns       []string
	uris      []string
	notBefore time.Time
	notAfter  time.Time
}

func (ca testCA) issue(t testing.TB, o leafOpts) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if o.notBefore.IsZero() {
		o.notBefore = t0.Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = t0.Add(time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0xbeef), Subject: pkix.Name{CommonName: o.cn},
		DNSNames: o.dns, NotBefore: o.notBefore, NotAfter: o.notAfter,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature}
	for _, u := range o.uris {
		pu, _ := url.Parse(u)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func encodePEM(c *x509.Certificate) string {
	return url.PathEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
}

func TestMTLSIdentityAndAllowList(t *testing.T) {
	ca := newCA(t, "ca")
	m, err := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/ns/pay/*", "api.internal", "*.svc.example", "billing"},
		Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts leafOpts
		want string
		r    Reason
	}{
		{"spiffe first", leafOpts{cn: "billing", dns: []string{"api.internal"}, uris: []string{"spiffe://prod.example/ns/pay/sa/api"}}, "spiffe://prod.example/ns/pay/sa/api", OK},
		{"dns when no spiffe", leafOpts{cn: "x", dns: []string{"API.internal"}, uris: []string{"https://not-spiffe"}}, "api.internal", OK},
		{"cn last", leafOpts{cn: "billing"}, "billing", OK},
		{"dns suffix", leafOpts{dns: []string{"a.b.svc.example"}}, "a.b.svc.example", OK},
		{"suffix needs a label", leafOpts{dns: []string{"svc.example"}}, "", NotListed},
		{"other namespace", leafOpts{uris: []string{"spiffe://prod.example/ns/ops/sa/api"}}, "", NotListed},
		{"other trust domain with same prefix", leafOpts{uris: []string{"spiffe://prod.example.evil/ns/pay/x"}}, "", NotListed},
		{"two spiffe ids", leafOpts{uris: []string{"spiffe://prod.example/ns/pay/a", "spiffe://prod.example/ns/pay/b"}}, "", Malformed},
		{"no identity", leafOpts{}, "", Malformed},
		{"expired", leafOpts{cn: "billing", notAfter: t0.Add(-time.Second)}, "", Expired},
		{"not yet valid", leafOpts{cn: "billing", notBefore: t0.Add(time.Second)}, "", NotYetValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, _ := ca.issue(t, tt.opts)
			p, r := m.FromChain([]*x509.Certificate{leaf, ca.cert})
			if r != tt.r || p.Subject != tt.want {
				t.Fatalf("FromChain = %q %v, want %q %v", p.Subject, r, tt.want, tt.r)
			}
			if r == OK {
				want := Principal{Subject: tt.want, Method: MethodMTLS, CredentialID: "beef", ExpiresAt: leaf.NotAfter}
				if diff := cmp.Diff(p, want); diff != "" {
					t.Errorf("principal (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestMTLSConfigErrors(t *testing.T) {
	for _, allow := range []string{"", "spiffe://x/*/y", "a*", "*.", "**"} {
		if _, err := NewMTLS(MTLSConfig{Allow: []string{"ok", allow}}); err == nil || !strings.HasPrefix(err.Error(), "allow[1]") {
			t.Errorf("NewMTLS(allow %q) error = %v, want one at allow[1]", allow, err)
		}
	}
}

func TestMTLSFromPEM(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	now := t0
	m, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/*"}, GatewayRoots: ca.pool,
		Now: func() time.Time { return now }})
	good, _ := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example/api"}})
	foreign, _ := other.issue(t, leafOpts{uris: []string{"spiffe://prod.example/api"}})
	outsider, _ := ca.issue(t, leafOpts{uris: []string{"spiffe://other.example/api"}})
	expired, _ := ca.issue(t, leafOpts{uris: []string{"spiffe://prod.example/api"}, notAfter: t0.Add(-time.Minute)})
	plusSafe := strings.ReplaceAll(encodePEM(good), "%2B", "+") // Envoy may leave '+' unescaped

	tests := []struct {
		name string
		pem  string
		r    Reason
	}{
		{"good", encodePEM(good), OK},
		{"unescaped plus", plusSafe, OK},
		{"with chain", encodePEM(good) + encodePEM(ca.cert), OK},
		{"wrong CA", encodePEM(foreign), NotAllowed},
		{"not on allow-list", encodePEM(outsider), NotListed},
		{"expired", encodePEM(expired), Expired},
		{"garbage", "not%20a%20pem", Malformed},
		{"bad escape", "%zz", Malformed},
		{"empty", "", NoCredentials},
	}
	for _, tt := range tests {
		if p, r := m.FromPEM(tt.pem); r != tt.r {
			t.Errorf("%s: FromPEM = %v %+v, want %v", tt.name, r, p, tt.r)
		}
	}
	noRoots, _ := NewMTLS(MTLSConfig{Allow: []string{"*"}})
	if _, r := noRoots.FromPEM(encodePEM(good)); r != NotAllowed {
		t.Errorf("FromPEM without GatewayRoots = %v, want %v", r, NotAllowed)
	}
}

func TestMTLSGatewayPrincipal(t *testing.T) {
	trusting, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/*"}, TrustGatewayPrincipal: true})
	wary, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/*"}})
	tests := []struct {
		m    *MTLS
		p    string
		want Reason
	}{
		{trusting, "spiffe://prod.example/api", OK},
		{trusting, "spiffe://evil.example/api", NotListed},
		{trusting, "", NoCredentials},
		{wary, "spiffe://prod.example/api", NotAllowed},
	}
	for _, tt := range tests {
		if _, r := tt.m.FromGatewayPrincipal(tt.p); r != tt.want {
			t.Errorf("FromGatewayPrincipal(%q) = %v, want %v", tt.p, r, tt.want)
		}
	}
}

// TestServerTLSConfig runs real handshakes: a client without a certificate, with one from
// another CA, and with a good one, whose verified chain maps to a principal.
func TestServerTLSConfig(t *testing.T) {
	ca, other := newCA(t, "ca"), newCA(t, "other")
	srvCert, srvKey := ca.issue(t, leafOpts{cn: "warden", dns: []string{"warden.local"},
		notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(time.Hour)})
	cfg, err := ServerTLSConfig(tls.Certificate{Certificate: [][]byte{srvCert.Raw}, PrivateKey: srvKey}, ca.pool)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/*"}})
	handshake := func(clientCA testCA, withCert bool) (Principal, Reason, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ccfg := &tls.Config{RootCAs: ca.pool, ServerName: "warden.local"}
		if withCert {
			leaf, key := clientCA.issue(t, leafOpts{uris: []string{"spiffe://prod.example/client"},
				notBefore: time.Now().Add(-time.Hour), notAfter: time.Now().Add(time.Hour)})
			ccfg.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}}
		}
		go func() { _ = tls.Client(c, ccfg).Handshake(); c.Close() }()
		sc := tls.Server(s, cfg)
		if err := sc.Handshake(); err != nil {
			return Principal{}, NoCredentials, err
		}
		p, r := m.FromChain(sc.ConnectionState().PeerCertificates)
		return p, r, nil
	}
	if _, _, err := handshake(ca, false); err == nil {
		t.Errorf("handshake without a client certificate succeeded")
	}
	if _, _, err := handshake(other, true); err == nil {
		t.Errorf("handshake with a certificate from another CA succeeded")
	}
	p, r, err := handshake(ca, true)
	if err != nil || r != OK || p.Subject != "spiffe://prod.example/client" {
		t.Errorf("good handshake: %v %v %q", err, r, p.Subject)
	}
	if _, err := ServerTLSConfig(tls.Certificate{}, nil); err == nil {
		t.Errorf("ServerTLSConfig(nil pool) error = nil")
	}
}

func BenchmarkMTLSFromChain(b *testing.B) {
	ca := newCA(b, "ca")
	leaf, _ := ca.issue(b, leafOpts{cn: "x", dns: []string{"a.internal"}, uris: []string{"spiffe://prod.example/ns/pay/sa/api"}})
	m, _ := NewMTLS(MTLSConfig{Allow: []string{"spiffe://prod.example/ns/pay/*"}, Now: func() time.Time { return t0 }})
	chain := []*x509.Certificate{leaf}
	b.ReportAllocs()
	for b.Loop() {
		if _, r := m.FromChain(chain); r != OK {
			b.Fatal(r)
		}
	}
}

func TestMTLSIdentitiesGiveAttributes(t *testing.T) {
	m, err := NewMTLS(MTLSConfig{
		Allow:                 []string{"spiffe://prod.example/*", "batch.internal"},
		TrustGatewayPrincipal: true,
		Identities: []MTLSIdentity{
			{Match: "spiffe://prod.example/ns/payments/*", Tenant: "payments", Roles: []string{"payments-service"}, Scopes: []string{"ledger:write"}},
			{Match: "spiffe://prod.example/*", Roles: []string{"service"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		principal string
		tenant    string
		roles     []string
		scopes    []string
	}{
		{"spiffe://prod.example/ns/payments/sa/api", "payments", []string{"payments-service"}, []string{"ledger:write"}}, // first match wins
		{"spiffe://prod.example/ns/web/sa/api", "", []string{"service"}, nil},
		{"batch.internal", "", nil, nil}, // allowed, but no identity: a subject only
	}
	for _, tt := range tests {
		p, r := m.FromGatewayPrincipal(tt.principal)
		if r != OK {
			t.Fatalf("%s: got %v, want OK", tt.principal, r)
		}
		if p.Subject != tt.principal || p.Tenant != tt.tenant || !slices.Equal(p.Roles, tt.roles) || !slices.Equal(p.Scopes, tt.scopes) || (p.Scopes == nil) != (tt.scopes == nil) {
			t.Errorf("%s: got %+v, want tenant %q roles %v scopes %v", tt.principal, p, tt.tenant, tt.roles, tt.scopes)
		}
	}
	if _, err := NewMTLS(MTLSConfig{Allow: []string{"*"}, Identities: []MTLSIdentity{{Match: "a*b"}}}); err == nil {
		t.Error("a bad identity pattern: got nil error")
	}
}
