package authz

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/wardenhq/warden/authn"
)

// Resource is the object an action is about. Type defaults to the action's resource part
// (`orders` for `orders:read`). ID, Owner and Tenant are optional, but when given they must be
// well formed: at most MaxIDLength bytes of valid UTF-8, no control characters, no `/` or `\`,
// and not `.` or `..`. An ownership rule makes its resource field required.
//
// Owner, Tenant and Attributes must come from the server side: the route's path parameters
// (Route.Resource) or the object the service looked up, never from request headers or bodies.
type Resource struct {
	Type       string
	ID         string
	Owner      string
	Tenant     string
	Attributes map[string]string
}

// validValue reports whether an id, owner or tenant is acceptable. Empty is acceptable here;
// the rules that need a value check for it.
func validValue(s string, max int) bool {
	if len(s) > max || s == "." || s == ".." {
		return false
	}
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == 0x7f || c == '/' || c == '\\' {
			return false
		}
		ascii = ascii && c < 0x80
	}
	return ascii || utf8.ValidString(s)
}

// fieldKind names a field of the resource or the principal that an ownership rule compares.
type fieldKind uint8

const (
	resOwner fieldKind = iota + 1
	resID
	resAttr
	prinSubject
	prinTenant
	prinCredentialID
	prinClaim
)

type field struct {
	kind fieldKind
	key  string // attribute or claim name
}

func parseResourceField(s string) (field, error) {
	switch {
	case s == "" || s == "resource.owner":
		return field{kind: resOwner}, nil
	case s == "resource.id":
		return field{kind: resID}, nil
	case strings.HasPrefix(s, "resource.attributes.") && validName(s[len("resource.attributes."):]):
		return field{kind: resAttr, key: s[len("resource.attributes."):]}, nil
	}
	return field{}, fmt.Errorf("%q: want resource.owner, resource.id or resource.attributes.<key>", s)
}

func parsePrincipalField(s string) (field, error) {
	switch {
	case s == "" || s == "principal.subject":
		return field{kind: prinSubject}, nil
	case s == "principal.tenant":
		return field{kind: prinTenant}, nil
	case s == "principal.credential_id":
		return field{kind: prinCredentialID}, nil
	case strings.HasPrefix(s, "principal.claims.") && validName(s[len("principal.claims."):]):
		return field{kind: prinClaim, key: s[len("principal.claims."):]}, nil
	}
	return field{}, fmt.Errorf("%q: want principal.subject, principal.tenant, principal.credential_id or principal.claims.<key>", s)
}

func (f field) ofResource(r *Resource) string {
	switch f.kind {
	case resOwner:
		return r.Owner
	case resID:
		return r.ID
	case resAttr:
		return r.Attributes[f.key]
	}
	return ""
}

func (f field) ofPrincipal(p *authn.Principal) string {
	switch f.kind {
	case prinSubject:
		return p.Subject
	case prinTenant:
		return p.Tenant
	case prinCredentialID:
		return p.CredentialID
	case prinClaim:
		return p.Claims[f.key]
	}
	return ""
}
