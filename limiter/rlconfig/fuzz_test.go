package rlconfig_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/wardenhq/warden/limiter"
	"github.com/wardenhq/warden/limiter/rlconfig"

	"github.com/wardenhq/warden/fielderr"
)

// FuzzParse checks that Parse never panics, that every error is an *fielderr.Error naming the
// file, and that whatever it accepts the limiter accepts too.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range append(files, more...) {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("domain: d\ndescriptors:\n- key: k\n  value: v*\n  rate_limit: {unit: hour, requests_per_unit: 7, replaces: [{name: x}]}\n"))
	f.Add([]byte("domain: &a d\ndescriptors: [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := rlconfig.Parse("fuzz.yaml", data)
		if err != nil {
			var e *fielderr.Error
			if !errors.As(err, &e) || e.File != "fuzz.yaml" {
				t.Fatalf("got %T %v, want an *fielderr.Error for fuzz.yaml", err, err)
			}
			return
		}
		if d.Name == "" {
			t.Fatal("accepted a domain with no name")
		}
		if err := limiter.ValidateDomains([]limiter.Domain{d}); err != nil {
			t.Fatalf("accepted a domain the limiter refuses: %v", err)
		}
	})
}
