package archtest_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/wardenhq/warden"

type pkg struct {
	path    string
	imports []string
	deps    []string
}

// listPackages runs go list over the whole module, test files excluded (the rules are about
// what ships; tests may reach real stores).
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports ","}}|{{join .Deps ","}}`, module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), "|", 3)
		if len(parts) != 3 {
			t.Fatalf("unexpected go list line %q", sc.Text())
		}
		pkgs = append(pkgs, pkg{path: parts[0], imports: split(parts[1]), deps: split(parts[2])})
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; want the whole module", len(pkgs))
	}
	return pkgs
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// under reports whether p is dir or a package below it (dir relative to the module).
func under(p, dir string) bool {
	full := module + "/" + dir
	return p == full || strings.HasPrefix(p, full+"/")
}

func hasPrefix(p string, prefixes ...string) bool {
	for _, pre := range prefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

var (
	transport = []string{"google.golang.org/grpc", "github.com/envoyproxy", module + "/gen"}
	protobuf  = []string{"google.golang.org/protobuf", "google.golang.org/genproto"}
	stores    = []string{
		"github.com/redis/go-redis",
		module + "/limiter/memstore",
		module + "/limiter/redisstore",
		module + "/authn/redisauth",
		module + "/authn/jwtauth/redisrevoke",
		module + "/authn/webhook/redisreplay",
		module + "/internal/redisconn",
	}
)

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	checked := map[string]bool{}
	for _, p := range pkgs {
		core := under(p.path, "limiter") || under(p.path, "authn") || under(p.path, "authz")
		if core {
			checked["core"] = true
			for _, imp := range p.imports {
				if hasPrefix(imp, transport...) || hasPrefix(imp, protobuf...) {
					t.Errorf("%s imports %s: limiter, authn and authz must not know gRPC, protobuf, gen or Envoy", p.path, imp)
				}
			}
			for _, dep := range p.deps {
				if hasPrefix(dep, transport...) {
					t.Errorf("%s reaches %s: limiter, authn and authz must not depend on gRPC, gen or Envoy", p.path, dep)
					break
				}
			}
		}
		if under(p.path, "service") {
			checked["service"] = true
			for _, dep := range p.deps {
				if hasPrefix(dep, stores...) {
					t.Errorf("%s reaches the concrete store %s: cmd/warden builds stores and passes them in", p.path, dep)
					break
				}
			}
		}
		if under(p.path, "clients") {
			checked["clients"] = true
			for _, dep := range p.deps {
				if hasPrefix(dep, module+"/service") {
					t.Errorf("%s reaches %s: clients talk to Warden over gRPC, never through service", p.path, dep)
				}
			}
		}
		for _, imp := range p.imports {
			if hasPrefix(imp, module+"/cmd") {
				t.Errorf("%s imports %s: nothing imports cmd", p.path, imp)
			}
		}
	}
	for _, want := range []string{"core", "service", "clients"} {
		if !checked[want] {
			t.Errorf("no %s package found: the rules checked nothing", want)
		}
	}
}

// TestRulesCatchViolations proves the matchers see a violation: a rule that matches nothing
// would pass forever.
func TestRulesCatchViolations(t *testing.T) {
	if !hasPrefix("google.golang.org/grpc/codes", transport...) {
		t.Error("grpc/codes not seen as transport")
	}
	if !hasPrefix(module+"/gen/warden/v1", transport...) {
		t.Error("gen/warden/v1 not seen as transport")
	}
	if !hasPrefix("github.com/redis/go-redis/v9", stores...) {
		t.Error("go-redis not seen as a store")
	}
	if hasPrefix(module+"/limiter", stores...) {
		t.Error("limiter seen as a concrete store")
	}
	if !under(module+"/authn/jwtauth", "authn") || under(module+"/authnx", "authn") {
		t.Error("under() is wrong")
	}
}
