// Command bench runs Warden's benchmarks and prints the comparison table:
//
//	go run ./bench -duration 2s -warmup 1s -rounds 1 -open-loop=false   # smoke
//	go run ./bench -out bench/results                                  # full run
//
// The ghz-based runner lives in its own module, bench/runner, so that ghz's ~240 modules stay
// out of Warden's go.mod. This launcher builds it with that module's go.mod and runs it with
// the same arguments and working directory. See bench/README.md.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

func main() {
	os.Exit(run())
}

func run() int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	tmp, err := os.MkdirTemp("", "warden-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "runner")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(root, "bench", "runner")
	build.Env = append(os.Environ(), "GOWORK=off")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench: building bench/runner:", err)
		return 2
	}
	cmd := exec.Command(bin, os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	return 0
}

// repoRoot walks up from the working directory to Warden's go.mod.
func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/wardenhq/warden\n")) {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("run from inside the Warden repository")
		}
		d = parent
	}
}
