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
