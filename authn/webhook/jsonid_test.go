package webhook

import (
	"strings"
	"testing"
)

func TestTopLevelID(t *testing.T) {
	tests := []struct {
		body   string
		want   string
		wantOK bool
	}{
		{`{"id":"evt_1"}`, "evt_1", true},
		{` { "object" : "event" , "id" : "evt_2" }`, "evt_2", true},
		{`{"data":{"id":"in_1"},"id":"evt_3"}`, "evt_3", true},
		{`{"a":[{"id":"x"},"}]",{"b":"\"id\""}],"n":-1.5e3,"t":true,"z":null,"id":"evt_4"}`, "evt_4", true},
		{`{"id":"evt_5","id":"evt_6"}`, "evt_5", true},
		{`{"data":{"id":"in_1"}}`, "", false},
		{`{"id":1}`, "", false},
		{`{"id":"e\"vt"}`, "", false},
		{`{"i\u0064":"evt"}`, "", false},
		{`{"id":""}`, "", false},
		{`["id","evt"]`, "", false},
		{`{"id":"evt`, "", false},
		{`{"a":{"b":"c"`, "", false},
		{``, "", false},
		{`{"id":"` + strings.Repeat("a", maxIDLen) + `"}`, strings.Repeat("a", maxIDLen), true},
		{`{"id":"` + strings.Repeat("a", maxIDLen+1) + `"}`, "", false},
		{"{\"id\":\"evt\x01\"}", "", false},
		{"{\"id\":\"\xff\"}", "", false},
	}
	for _, tt := range tests {
		got, ok := topLevelID([]byte(tt.body))
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("topLevelID(%.40q) = %q, %v; want %q, %v", tt.body, got, ok, tt.want, tt.wantOK)
		}
	}
}
