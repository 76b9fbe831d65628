package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: every server started in a
// test must stop completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
