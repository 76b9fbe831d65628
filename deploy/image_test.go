package deploy

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// imageBuildTags returns the -tags of the go build command in image/build.sh ("" without).
func imageBuildTags(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("image/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, "build")
		if i < 1 || f[i-1] != "go" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for j, a := range f[i+1:] {
			if v, ok := strings.CutPrefix(a, "-tags="); ok {
				return v
			}
			if a == "-tags" && i+2+j < len(f) {
				return f[i+2+j]
			}
		}
		return ""
	}
	t.Fatal("image/build.sh: no go build command")
	return ""
}

// The image's binary links no package whose reachable code executes templates: template
// execution looks methods up by name through reflection, and while it is reachable the
// linker keeps every exported method of every type in the binary. grpc-go's tracing
// (golang.org/x/net/trace, left out by the grpcnotrace tag) is such a package: its debug
// pages, registered on http.DefaultServeMux (which Warden never serves), render
// html/template. With it the binary was 35 MB instead of 23.5 (go-redis's command API alone
// 4 MB of code) and an idle Warden's RSS 5 MiB more (issue 19).
func TestImageBinaryKeepsDeadMethodsOut(t *testing.T) {
	tags := imageBuildTags(t)
	cmd := exec.Command("go", "list", "-deps", "-tags", tags, "./cmd/warden")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps -tags %q ./cmd/warden: %v", tags, err)
	}
	deps := strings.Fields(string(out))
	for _, p := range []string{"golang.org/x/net/trace", "html/template"} {
		if slices.Contains(deps, p) {
			t.Errorf("built with -tags %q (image/build.sh), cmd/warden links %s", tags, p)
		}
	}
}
