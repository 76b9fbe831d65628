package authz

import (
	"slices"
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

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"/", "/api/", "/api", "/api/v1/", "//", "/api//", "/api/{x}/", "/a/../", "api/", "/a%2f/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		segs, err := parsePrefix(prefix, DefaultMaxSegments)
		if err != nil {
			return
		}
		// Accepted prefixes are literal segments that a request path can match, and they
		// round-trip with or without their final slash.
		lits := make([]string, len(segs))
		for i, s := range segs {
			if s.kind != segLiteral {
				t.Fatalf("%q: segment %d is not literal", prefix, i)
			}
			if ok, enc := validSegment(s.text); !ok || enc {
				t.Fatalf("%q: literal %q can never match a valid path", prefix, s.text)
			}
			lits[i] = s.text
		}
		back := "/" + strings.Join(lits, "/")
		if back != prefix && back+"/" != prefix {
			t.Fatalf("parsePrefix(%q) round-trips to %q", prefix, back)
		}
	})
}

// fuzzRoutes holds templates, prefixes, HEAD and `*` routes, so that Match's precedence is
// fuzzed as a whole.
var fuzzRoutes = []RouteConfig{
	{Name: "order", Method: "GET", Path: "/v1/users/{user_id}/orders/{order_id}", Action: "orders:read", OwnerParam: "user_id", IDParam: "order_id"},
	{Name: "mine", Method: "GET", Path: "/v1/users/me/orders", Action: "orders:list"},
	{Name: "files", Method: "*", Path: "/files/{rest...}", Public: true},
	{Name: "api", Method: "GET", Prefix: "/api/", Public: true},
	{Name: "api_v1", Method: "GET", Prefix: "/api/v1/", Public: true},
	{Name: "api_user", Method: "GET", Path: "/api/v1/users/{id}", Public: true},
	{Name: "head_user", Method: "HEAD", Path: "/api/v1/users/{id}", Public: true},
	{Name: "root", Method: "POST", Prefix: "/", Public: true},
}

func FuzzMatch(f *testing.F) {
	pol, err := Compile(Config{Routes: fuzzRoutes})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"/v1/users/alice/orders/o-1", "/v1/users/me/orders", "/files/a/b", "/v1/users/alice/../bob/orders/1", "/v1/users/%2e%2e/orders/x", "/files/%2F", "/v1//users", "/?x",
		"/api/", "/api/v1/users/x", "/api/v1/x/y", "/%61pi/v1", "/apikeys", "/api/%2e%2e/x"} {
		f.Add("GET", s)
	}
	f.Add("HEAD", "/api/v1/users/x")
	f.Add("HEAD", "/api/v1/users/x/y")
	f.Add("POST", "/anything")
	f.Fuzz(func(t *testing.T, method, path string) {
		var ps Params
		r, reason := pol.Match(method, path, &ps)
		p, _, _ := strings.Cut(path, "?")
		if r == nil {
			if reason == OK {
				t.Fatalf("Match(%q) = nil route with OK", path)
			}
			if reason != NoRoute {
				return
			}
			if want := wantFuzzRoute(method, p); want != "" {
				t.Fatalf("Match(%s, %q) = no route, want %s", method, path, want)
			}
			return
		}
		// No accepted path may traverse or smuggle a separator into a parameter.
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
		if want := wantFuzzRoute(method, p); r.Name != want {
			t.Fatalf("Match(%s, %q) = %s, want %s", method, path, r.Name, want)
		}
	})
}

// wantFuzzRoute is the route of fuzzRoutes that RouteTable's documented precedence picks for
// an accepted path, computed independently: the path's decoded segments are compared with
// each pattern, method group by method group, templates by specificity, then prefixes by
// length.
func wantFuzzRoute(method, p string) string {
	if len(p) > 1 && strings.HasSuffix(p, "/") {
		p = p[:len(p)-1]
	}
	var segs []string
	if p != "/" {
		for _, s := range strings.Split(p[1:], "/") {
			segs = append(segs, unescape(s))
		}
	}
	is := func(prefix ...string) bool {
		return len(segs) >= len(prefix) && slices.Equal(segs[:len(prefix)], prefix)
	}
	n := len(segs)
	groups := map[string]func() string{
		"GET": func() string {
			switch {
			case n == 4 && is("v1", "users", "me", "orders"):
				return "mine"
			case n == 5 && is("v1", "users") && segs[3] == "orders":
				return "order"
			case n == 4 && is("api", "v1", "users"):
				return "api_user"
			case is("api", "v1"):
				return "api_v1"
			case is("api"):
				return "api"
			}
			return ""
		},
		"HEAD": func() string {
			if n == 4 && is("api", "v1", "users") {
				return "head_user"
			}
			return ""
		},
		"POST": func() string { return "root" },
		"*": func() string {
			if n >= 2 && is("files") {
				return "files"
			}
			return ""
		},
	}
	order := []string{method}
	if method == "HEAD" {
		order = append(order, "GET")
	}
	for _, m := range append(order, "*") {
		if g := groups[m]; g != nil {
			if r := g(); r != "" {
				return r
			}
		}
	}
	return ""
}
