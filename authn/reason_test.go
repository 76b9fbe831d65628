package authn

import "testing"

func TestReasonString(t *testing.T) {
	seen := map[string]Reason{}
	for r := OK; r < numReasons; r++ {
		s := r.String()
		if s == "" || s == "invalid" {
			t.Errorf("Reason(%d).String() = %q, want a name", r, s)
		}
		if prev, ok := seen[s]; ok {
			t.Errorf("Reason(%d) and Reason(%d) share the name %q", prev, r, s)
		}
		seen[s] = r
	}
	if got, want := numReasons.String(), "invalid"; got != want {
		t.Errorf("out-of-range Reason.String() = %q, want %q", got, want)
	}
	if got, want := Unavailable.String(), "unavailable"; got != want {
		t.Errorf("Unavailable.String() = %q, want %q", got, want)
	}
}
