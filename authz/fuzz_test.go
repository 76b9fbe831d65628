package authz

import (
	"strings"
	"testing"
)

func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"/", "/v1/users/{user_id}/orders/{order_id}", "/static/{rest...}", "/a//b", "/{x}/{x}", "/a/{x}.json", "/{", "/{}", "/{...}", "/a/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		segs, err := parseTemplate(tmpl, DefaultMaxSegments)
		if err != nil {
			return
		}
		// Accepted templates round-trip and hold no segment a request path could not match.
		var b strings.Builder
		params := 0
		for i, s := range segs {
			b.WriteByte('/')
			switch s.kind {
			case segLiteral:
				if ok, enc := validSegment(s.text); !ok || enc {
					t.Fatalf("%q: literal %q can never match a valid path", tmpl, s.text)
				}
				b.WriteString(s.text)
			case segParam:
				params++
				b.WriteString("{" + s.text + "}")
			case segCatchAll:
				params++
				if i != len(segs)-1 {
					t.Fatalf("%q: catch-all not last", tmpl)
				}
				b.WriteString("{" + s.text + "...}")
			}
		}
		if len(segs) == 0 {
			b.WriteByte('/')
		}
		if b.String() != tmpl {
			t.Fatalf("parse(%q) round-trips to %q", tmpl, b.String())
		}
		if params > MaxParams {
			t.Fatalf("%q: %d params", tmpl, params)
		}
	})
}

func FuzzMatch(f *testing.F) {
	pol, err := Compile(Config{Routes: []RouteConfig{
		{Name: "order", Method: "GET", Path: "/v1/users/{user_id}/orders/{order_id}", Action: "orders:read", OwnerParam: "user_id", IDParam: "order_id"},
		{Name: "mine", Method: "GET", Path: "/v1/users/me/orders", Action: "orders:list"},
		{Name: "files", Method: "*", Path: "/files/{rest...}", Public: true},
	}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/v1/users/alice/orders/o-1", "/v1/users/me/orders", "/files/a/b", "/v1/users/alice/../bob/orders/1", "/v1/users/%2e%2e/orders/x", "/files/%2F", "/v1//users", "/?x"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		var ps Params
		r, reason := pol.Match(method, path, &ps)
		if r == nil {
			if reason == OK {
				t.Fatalf("Match(%q) = nil route with OK", path)
			}
			return
		}
		// No accepted path may traverse or smuggle a separator into a parameter.
		p, _, _ := strings.Cut(path, "?")
		if strings.Contains(p, "//") || strings.Contains(p, `\`) {
			t.Fatalf("Match accepted %q", path)
		}
		for i := range ps.Len() {
			v := ps.Value(i)
			if v == "" || v == "." || v == ".." {
				t.Fatalf("Match(%q): param %d = %q", path, i, v)
			}
			if r.Name != "files" && strings.ContainsAny(v, "/\\%") {
				t.Fatalf("Match(%q): param %d = %q", path, i, v)
			}
			for _, seg := range strings.Split(v, "/") {
				if seg == "" || seg == "." || seg == ".." {
					t.Fatalf("Match(%q): param %d = %q has segment %q", path, i, v, seg)
				}
			}
		}
		if got := r.Resource(&ps); r.Name == "order" && (got.Owner == "" || got.ID == "") {
			t.Fatalf("Match(%q): resource %+v", path, got)
		}
	})
}
