// Package testutil holds the small helpers Warden's tests share. It is imported by tests
// only, and knows nothing of Warden's packages: it polls conditions, nothing more.
package testutil

import (
	"testing"
	"time"
)

// Poll calls cond until it returns true or d has passed, and reports whether it did; cond is
// called once more at the end, so a condition that became true at the last moment counts.
// It sleeps d/400 between calls, at least a millisecond and at most 25ms, so a short wait
// polls finely and a long one (a condition that scrapes or dials) does not spin.
//
// A test that must see the condition uses WaitFor; Poll also serves a test that checks a
// condition does NOT become true within d.
func Poll(d time.Duration, cond func() bool) bool {
	every := min(max(d/400, time.Millisecond), 25*time.Millisecond)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(every) {
		if cond() {
			return true
		}
	}
	return cond()
}

// WaitFor polls cond (as Poll does) for up to d, and fails t with "timed out waiting for
// what" if it never returned true. Call it from the test's goroutine (it calls t.Fatalf).
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}
