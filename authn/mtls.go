package authn

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/wardenhq/warden/fielderr"
)

// IdentitySource is a place in a certificate a principal can come from.
type IdentitySource uint8

const (
	SourceSPIFFE IdentitySource = iota + 1 // the spiffe:// URI SAN
	SourceDNS                              // the first DNS SAN
	SourceCN                               // the subject common name
)

// MTLSConfig configures MTLS. Allow is required; every other field has the default stated.
type MTLSConfig struct {
	// Sources is the order in which a certificate's identity is looked for. Default
	// SPIFFE, DNS, CN.
	Sources []IdentitySource `yaml:"sources"`
	// Allow lists the principals that may authenticate. Each entry is one of:
	//   - an exact principal ("spiffe://prod.example/ns/pay/sa/api", "api.internal");
	//   - a prefix ending in "/*" ("spiffe://prod.example/*" for a whole trust domain,
	//     "spiffe://prod.example/ns/pay/*");
	//   - a DNS suffix "*.example.com" (one or more labels before ".example.com");
	//   - "*": any authentic principal.
	// Empty refuses everyone (NotAllowed).
	Allow []string `yaml:"allow"`
	// GatewayRoots verifies certificates passed in requests as PEM (Credentials.
	// PeerCertificatePEM). Default nil: such certificates are refused (NotAllowed).
	GatewayRoots *x509.CertPool `yaml:"-"`
	// GatewayRootsFile is a PEM file of those roots, read by NewMTLS when GatewayRoots is
	// nil.
	GatewayRootsFile string `yaml:"gateway_roots_file"`
	// TrustGatewayPrincipal accepts Credentials.PeerPrincipal, a principal the gateway
	// verified itself (Envoy's source.principal). Enable it only when every caller is a
	// trusted gateway (Warden's listener authenticates them). Default false.
	TrustGatewayPrincipal bool `yaml:"trust_gateway_principal"`
	// Identities give authenticated principals their attributes: the first entry whose
	// Match (same patterns as Allow) matches sets tenant, roles, scopes and tier. A principal
	// that matches none has a subject only, which authorization can grant nothing.
	Identities []MTLSIdentity `yaml:"identities"`
	// MaxPEMBytes caps an encoded PEM chain. Default 16384.
	MaxPEMBytes int `yaml:"-"`
	// Now is the clock. Default time.Now.
	Now func() time.Time `yaml:"-"`
}

// MTLSIdentity is the attributes of the principals a pattern matches.
type MTLSIdentity struct {
	Match  string   `yaml:"match"`
	Tenant string   `yaml:"tenant"`
	Roles  []string `yaml:"roles"`
	// Scopes narrow the roles; nil means not narrowed.
	Scopes []string `yaml:"scopes"`
	Tier   string   `yaml:"tier"`
}

// MTLS maps client certificates to principals and checks them against an allow-list.
// Build it with NewMTLS; it is immutable and safe for concurrent use.
type MTLS struct {
	cfg        MTLSConfig
	allow      principalSet
	identities []identity
	sources    []IdentitySource
}

type identity struct {
	match principalSet
	attrs MTLSIdentity
}

// principalSet is a compiled list of principal patterns.
type principalSet struct {
	exact  map[string]bool
	prefix []string // "spiffe://td/ns/": matches when the principal starts with it
	suffix []string // ".example.com"
	anyone bool
}

// add compiles one pattern; the message says what is wrong with a bad one.
func (ps *principalSet) add(a string) string {
	if ps.exact == nil {
		ps.exact = map[string]bool{}
	}
	star := strings.IndexByte(a, '*')
	switch {
	case a == "*":
		ps.anyone = true
	case star < 0 && a != "":
		ps.exact[a] = true
	case strings.HasPrefix(a, "*.") && star == 0 && strings.LastIndexByte(a, '*') == 0 && len(a) > 2:
		ps.suffix = append(ps.suffix, a[1:])
	case strings.HasSuffix(a, "/*") && star == len(a)-1 && len(a) > 2:
		if u, err := url.Parse(a[:len(a)-1]); err != nil || u.Host == "" && u.Scheme != "" {
			return "bad prefix pattern"
		}
		ps.prefix = append(ps.prefix, a[:len(a)-1])
	default:
		return `want an exact principal, a prefix ending in "/*", "*.domain" or "*"`
	}
	return ""
}

func (ps *principalSet) has(p string) bool {
	if ps.anyone || ps.exact[p] {
		return true
	}
	for _, pre := range ps.prefix {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	if !strings.Contains(p, "://") {
		for _, suf := range ps.suffix {
			if len(p) > len(suf) && strings.HasSuffix(p, suf) {
				return true
			}
		}
	}
	return false
}

// UnmarshalText reads a source's config name: spiffe, dns or cn.
func (s *IdentitySource) UnmarshalText(b []byte) error {
	switch string(b) {
	case "spiffe":
		*s = SourceSPIFFE
	case "dns":
		*s = SourceDNS
	case "cn":
		*s = SourceCN
	default:
		return fmt.Errorf("must be spiffe, dns or cn, not %q", b)
	}
	return nil
}

// NewMTLS validates cfg and returns an MTLS.
func NewMTLS(cfg MTLSConfig) (*MTLS, error) {
	m := &MTLS{cfg: cfg, sources: cfg.Sources}
	if len(m.sources) == 0 {
		m.sources = []IdentitySource{SourceSPIFFE, SourceDNS, SourceCN}
	}
	for i, s := range m.sources {
		if s < SourceSPIFFE || s > SourceCN {
			return nil, fielderr.New(fmt.Sprintf("sources[%d]", i), errors.New("unknown identity source"))
		}
	}
	if m.cfg.MaxPEMBytes <= 0 {
		m.cfg.MaxPEMBytes = 16384
	}
	if m.cfg.Now == nil {
		m.cfg.Now = time.Now
	}
	if m.cfg.GatewayRoots == nil && cfg.GatewayRootsFile != "" {
		pem, err := os.ReadFile(cfg.GatewayRootsFile)
		if err == nil {
			m.cfg.GatewayRoots, err = CertPoolFromPEM(pem)
		}
		if err != nil {
			return nil, fielderr.New("gateway_roots_file", err)
		}
	}
	for i, a := range cfg.Allow {
		if msg := m.allow.add(a); msg != "" {
			return nil, fielderr.New(fmt.Sprintf("allow[%d]", i), errors.New(msg))
		}
	}
	for i, id := range cfg.Identities {
		var ps principalSet
		if msg := ps.add(id.Match); msg != "" {
			return nil, fielderr.New(fmt.Sprintf("identities[%d].match", i), errors.New(msg))
		}
		m.identities = append(m.identities, identity{match: ps, attrs: id})
	}
	return m, nil
}

func (m *MTLS) allowed(p string) bool { return m.allow.has(p) }

// withAttributes gives an authenticated principal the attributes of its first matching
// identity.
func (m *MTLS) withAttributes(p Principal) Principal {
	for i := range m.identities {
		if id := &m.identities[i]; id.match.has(p.Subject) {
			p.Tenant, p.Roles, p.Scopes, p.Tier = id.attrs.Tenant, id.attrs.Roles, id.attrs.Scopes, id.attrs.Tier
			break
		}
	}
	return p
}

// Identity returns the principal name of a certificate, from the first of the configured
// sources it has. Malformed if it has none, or several SPIFFE ids.
func (m *MTLS) Identity(cert *x509.Certificate) (string, Reason) {
	for _, s := range m.sources {
		switch s {
		case SourceSPIFFE:
			id := ""
			for _, u := range cert.URIs {
				if u.Scheme != "spiffe" {
					continue
				}
				if id != "" || u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
					return "", Malformed
				}
				id = u.String()
			}
			if id != "" {
				return id, OK
			}
		case SourceDNS:
			if len(cert.DNSNames) > 0 && cert.DNSNames[0] != "" {
				return strings.ToLower(cert.DNSNames[0]), OK
			}
		case SourceCN:
			if cert.Subject.CommonName != "" {
				return cert.Subject.CommonName, OK
			}
		}
	}
	return "", Malformed
}

// FromChain authenticates a chain that Warden's TLS listener has already verified (leaf
// first): it checks the leaf's validity period, maps it and checks the allow-list.
func (m *MTLS) FromChain(chain []*x509.Certificate) (Principal, Reason) {
	if len(chain) == 0 || chain[0] == nil {
		return Principal{}, NoCredentials
	}
	if r := validity(chain[0], m.cfg.Now()); r != OK {
		return Principal{}, r
	}
	return m.principal(chain[0])
}

func validity(leaf *x509.Certificate, now time.Time) Reason {
	switch {
	case now.Before(leaf.NotBefore):
		return NotYetValid
	case now.After(leaf.NotAfter):
		return Expired
	}
	return OK
}

func (m *MTLS) principal(leaf *x509.Certificate) (Principal, Reason) {
	id, r := m.Identity(leaf)
	if r != OK {
		return Principal{}, r
	}
	if !m.allowed(id) {
		return Principal{}, NotListed
	}
	return m.withAttributes(Principal{Subject: id, Method: MethodMTLS, CredentialID: leaf.SerialNumber.Text(16),
		ExpiresAt: leaf.NotAfter}), OK
}

// FromPEM authenticates a URL-encoded PEM chain (leaf first) passed by a gateway, as
// Envoy's ext_authz source.certificate: it verifies the chain against GatewayRoots for
// client authentication at the current time, then maps and checks the leaf.
func (m *MTLS) FromPEM(encoded string) (Principal, Reason) {
	if encoded == "" {
		return Principal{}, NoCredentials
	}
	if m.cfg.GatewayRoots == nil {
		return Principal{}, NotAllowed
	}
	if len(encoded) > m.cfg.MaxPEMBytes {
		return Principal{}, Malformed
	}
	// PathUnescape, not QueryUnescape: a literal "+" of base64 must stay a "+".
	raw, err := url.PathUnescape(encoded)
	if err != nil {
		return Principal{}, Malformed
	}
	chain, err := parsePEMChain([]byte(raw))
	if err != nil {
		return Principal{}, Malformed
	}
	leaf, now := chain[0], m.cfg.Now()
	if r := validity(leaf, now); r != OK {
		return Principal{}, r
	}
	opts := x509.VerifyOptions{Roots: m.cfg.GatewayRoots, Intermediates: x509.NewCertPool(),
		CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return Principal{}, Expired // an intermediate expired
		}
		return Principal{}, NotAllowed
	}
	return m.principal(leaf)
}

// FromGatewayPrincipal accepts a principal a trusted gateway verified, if
// TrustGatewayPrincipal is set and it is on the allow-list.
func (m *MTLS) FromGatewayPrincipal(p string) (Principal, Reason) {
	switch {
	case p == "":
		return Principal{}, NoCredentials
	case !m.cfg.TrustGatewayPrincipal:
		return Principal{}, NotAllowed
	case !m.allowed(p):
		return Principal{}, NotListed
	}
	return m.withAttributes(Principal{Subject: p, Method: MethodMTLS}), OK
}

func parsePEMChain(b []byte) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, errors.New("not a certificate")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 || len(strings.TrimSpace(string(b))) != 0 {
		return nil, errors.New("no certificate, or trailing data")
	}
	return chain, nil
}

// CertPoolFromPEM builds a pool from PEM certificates (a CA bundle file's contents).
func CertPoolFromPEM(b []byte) (*x509.CertPool, error) {
	chain, err := parsePEMChain(b)
	if err != nil {
		return nil, fmt.Errorf("authn: CA bundle: %w", err)
	}
	p := x509.NewCertPool()
	for _, c := range chain {
		p.AddCert(c)
	}
	return p, nil
}

// ServerTLSConfig returns a tls.Config for Warden's own listener that presents cert and
// requires client certificates that chain to clientCAs (TLS 1.2 at least). The verified
// chain reaches MTLS.FromChain through the connection state.
func ServerTLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) (*tls.Config, error) {
	if clientCAs == nil {
		return nil, errors.New("authn: server TLS config: client CA pool is required")
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
	}, nil
}
