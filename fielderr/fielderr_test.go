package fielderr_test

import (
	"errors"
	"testing"

	"github.com/wardenhq/warden/fielderr"
)

func TestError(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{fielderr.Errorf("unit", "unknown unit %q", "eon"), `unit: unknown unit "eon"`},
		{&fielderr.Error{File: "w.yaml", Line: 3, Path: "a.b", Err: errors.New("bad")}, "w.yaml:3: a.b: bad"},
		{&fielderr.Error{File: "w.yaml", Err: errors.New("bad")}, "w.yaml: bad"},
		{fielderr.Prefix("domains[0]", fielderr.Errorf("[1].key", "required")), "domains[0][1].key: required"},
		{fielderr.Prefix("mtls", fielderr.Errorf("allow[2]", "bad")), "mtls.allow[2]: bad"},
		{fielderr.Prefix("jwt", errors.New("plain")), "jwt: plain"},
		{fielderr.Prefix("x", errors.Join(fielderr.Errorf("a", "1"), fielderr.Errorf("b", "2"))), "x.a: 1\nx.b: 2"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	var l fielderr.List
	if l.Err() != nil {
		t.Error("empty List.Err() is not nil")
	}
	l.Addf("a", "one")
	l.Add("b", errors.New("two"))
	var fe *fielderr.Error
	if !errors.As(l.Err(), &fe) || fe.Path != "a" || fe.Msg() != "one" {
		t.Errorf("errors.As(List) = %v", fe)
	}
	if got := len(fielderr.Flatten(errors.Join(l, errors.New("other")))); got != 3 {
		t.Errorf("Flatten: %d errors, want 3", got)
	}
}
