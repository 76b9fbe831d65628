package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"
)

// checkParsed states what every parser promises when it accepts.
func checkParsed(t *testing.T, r Reason, d *delivery) {
	t.Helper()
	switch r {
	case OK:
		if d.n < 1 || d.n > maxCandidates {
			t.Fatalf("accepted with %d candidates", d.n)
		}
	case BadFormat, NoMatchingSignature, MissingHeader:
	default:
		t.Fatalf("parser answered %v", r)
	}
}

func FuzzStandardSignatures(f *testing.F) {
	f.Add("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
	f.Add("v1a,xyz v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=  v2,abc")
	f.Add("v1,")
	f.Fuzz(func(t *testing.T, v string) {
		var d delivery
		checkParsed(t, parseStandardSignatures(v, &d), &d)
	})
}

func FuzzStripeHeader(f *testing.F) {
	f.Add("t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39")
	f.Add("t=1,v1=00,t=2")
	f.Add(",,=")
	f.Fuzz(func(t *testing.T, v string) {
		var d delivery
		r := parseStripeHeader(v, &d)
		checkParsed(t, r, &d)
		if r == OK {
			if n, err := strconv.ParseInt(d.ts, 10, 64); err != nil || n != d.unix || d.ts[0] == '+' {
				t.Fatalf("accepted timestamp %q as %d", d.ts, d.unix)
			}
		}
	})
}

func FuzzPrefixed(f *testing.F) {
	f.Add("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17", "sha256=", false)
	f.Add("v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503", "v0=", false)
	f.Add("g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", "", true)
	f.Fuzz(func(t *testing.T, v, prefix string, b64 bool) {
		enc := Hex
		if b64 {
			enc = Base64
		}
		var d delivery
		r := parsePrefixed(v, prefix, enc, &d)
		checkParsed(t, r, &d)
		if r == OK && len(v) != len(prefix)+map[Encoding]int{Hex: 64, Base64: b64Len}[enc] {
			t.Fatalf("accepted %q of length %d", v, len(v))
		}
	})
}

func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{"1614265330", "+1", "-1", "1.5", "", "0001", "9999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseTimestamp(s)
		want, err := strconv.ParseUint(s, 10, 64)
		wantOK := err == nil && len(s) <= maxTSDigits && s[0] != '+'
		if ok != wantOK || ok && uint64(n) != want {
			t.Fatalf("parseTimestamp(%q) = %d, %v; strconv says %d, %v", s, n, ok, want, err)
		}
	})
}

func FuzzTopLevelID(f *testing.F) {
	f.Add([]byte(`{"id":"evt_1","object":"event"}`))
	f.Add([]byte(`{"data":{"id":"x"},"id":"evt_2"}`))
	f.Add([]byte(`{"a":[1,{"b":"}"}],"id":"e"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, ok := topLevelID(body)
		if !ok {
			return
		}
		if !validID(id) || bytes.ContainsAny([]byte(id), `"\\`) {
			t.Fatalf("topLevelID returned %q", id)
		}
		// Against encoding/json, where the document is valid and has one "id" key.
		if !json.Valid(body) || bytes.Count(body, []byte(`"id"`)) != 1 {
			return
		}
		var v struct {
			ID *string `json:"id"`
		}
		if err := json.Unmarshal(body, &v); err == nil && (v.ID == nil || *v.ID != id) {
			t.Fatalf("topLevelID = %q; encoding/json reads %v", id, v.ID)
		}
	})
}

// FuzzVerify runs whole headers through every scheme: nothing panics, and nothing random
// ever verifies.
func FuzzVerify(f *testing.F) {
	f.Add("msg_1", "1700000000", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"id":"evt_1"}`))
	f.Add("a.b", "1700000000", "t=1700000000,v1=00", []byte{})
	secret := "secret-A-0123456789abcdefghij"
	v, err := New(Config{
		Sources: []Source{
			{Name: "sw", Scheme: StandardWebhooks, Secrets: []string{"whsec_c2VjcmV0LUEtMDEyMzQ1Njc4OWFiY2RlZmdoaWo="}},
			{Name: "stripe", Scheme: Stripe, Secrets: []string{secret}, Replay: true},
			{Name: "gh", Scheme: GitHub, Secrets: []string{secret}},
			{Name: "slack", Scheme: Slack, Secrets: []string{secret}},
			{Name: "gen", Scheme: Generic, Secrets: []string{secret}, Generic: GenericConfig{
				SignatureHeader: "sig", TimestampHeader: "ts", IDHeader: "id", Template: "{id}.{timestamp}.{body}",
			}},
		},
		Replay: NewMemoryReplay(MemoryReplayConfig{}),
		Now:    func() time.Time { return time.Unix(1700000000, 0) },
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := Map{
			"webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig,
			"stripe-signature": sig, "x-hub-signature-256": sig, "x-github-delivery": id,
			"x-slack-signature": sig, "x-slack-request-timestamp": ts, "sig": sig, "ts": ts, "id": id,
		}
		for _, name := range []string{"sw", "stripe", "gh", "slack", "gen"} {
			if r := v.Verify(context.Background(), name, h, body); r.Valid || r.Reason >= numReasons {
				t.Fatalf("%s: Verify = %+v", name, r)
			}
		}
	})
}
