package webhook_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/wardenhq/warden/authn/webhook"

	"github.com/wardenhq/warden/fielderr"
)

// Published test vectors.
const (
	githubSecret   = "It's a Secret to Everybody"
	githubBody     = "Hello, World!"
	githubExpected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

	standardSecret   = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	standardID       = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	standardTS       = 1614265330
	standardBody     = `{"test": 2432232314}`
	standardExpected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

	slackSecret   = "8f742231b10e8888abcd99yyyzzz85a5"
	slackTS       = 1531420618
	slackBody     = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
	slackExpected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
)

// Secrets of at least 24 bytes for the round trips.
const (
	secretA  = "secret-A-0123456789abcdefghij"
	secretB  = "secret-B-0123456789abcdefghij"
	whsecA   = "whsec_c2VjcmV0LUEtMDEyMzQ1Njc4OWFiY2RlZmdoaWo=" // base64(secretA)
	whsecB   = "whsec_c2VjcmV0LUItMDEyMzQ1Njc4OWFiY2RlZmdoaWo=" // base64(secretB)
	stripeID = "evt_1NG8Du2eZvKYlo2CUI79vXWy"
)

var genericCfg = webhook.GenericConfig{
	SignatureHeader: "X-Signature",
	Prefix:          "hmac-sha256=",
	Encoding:        webhook.Base64,
	TimestampHeader: "X-Timestamp",
	IDHeader:        "X-Event-Id",
	Template:        "{timestamp}:{id}:{body}",
}

func sources(secrets map[webhook.Scheme][]string) []webhook.Source {
	var out []webhook.Source
	for _, sc := range []webhook.Scheme{webhook.StandardWebhooks, webhook.Stripe, webhook.GitHub, webhook.Slack, webhook.Generic} {
		src := webhook.Source{Name: sc.String(), Scheme: sc, Secrets: secrets[sc]}
		if src.Secrets == nil {
			src.Secrets = []string{secretA}
			if sc == webhook.StandardWebhooks {
				src.Secrets = []string{whsecA}
			}
		}
		if sc == webhook.Generic {
			src.Generic = genericCfg
		}
		out = append(out, src)
	}
	return out
}

func newVerifier(t testing.TB, now time.Time, srcs []webhook.Source, store webhook.ReplayStore) *webhook.Verifier {
	t.Helper()
	v, err := webhook.New(webhook.Config{Sources: srcs, Replay: store, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func TestPublishedVectors(t *testing.T) {
	tests := []struct {
		name   string
		src    webhook.Source
		now    time.Time
		header string
		body   string
		h      webhook.Map
		wantID string
		wantTS time.Time
	}{
		{
			name: "github", src: webhook.Source{Name: "gh", Scheme: webhook.GitHub, Secrets: []string{githubSecret}},
			body: githubBody, h: webhook.Map{"X-Hub-Signature-256": githubExpected, "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
			wantID: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
		},
		{
			name: "standard webhooks", src: webhook.Source{Name: "sw", Scheme: webhook.StandardWebhooks, Secrets: []string{standardSecret}},
			now: time.Unix(standardTS, 0), body: standardBody,
			h:      webhook.Map{"webhook-id": standardID, "webhook-timestamp": "1614265330", "webhook-signature": standardExpected},
			wantID: standardID, wantTS: time.Unix(standardTS, 0),
		},
		{
			name: "slack", src: webhook.Source{Name: "slack", Scheme: webhook.Slack, Secrets: []string{slackSecret}},
			now: time.Unix(slackTS, 0), body: slackBody,
			h:      webhook.Map{"X-Slack-Signature": slackExpected, "X-Slack-Request-Timestamp": "1531420618"},
			wantTS: time.Unix(slackTS, 0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.now, []webhook.Source{tt.src}, nil)
			got := v.Verify(context.Background(), tt.src.Name, tt.h, []byte(tt.body))
			want := webhook.Result{Valid: true, Reason: webhook.OK, EventID: tt.wantID, Timestamp: tt.wantTS}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Verify (-got +want):\n%s", diff)
			}
		})
	}
}

func TestSignersMatchVectors(t *testing.T) {
	sw, err := webhook.SignStandardWebhooks(standardSecret, standardID, time.Unix(standardTS, 0), []byte(standardBody))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{sw, webhook.SignGitHub(githubSecret, []byte(githubBody)), webhook.SignSlack(slackSecret, time.Unix(slackTS, 0), []byte(slackBody))}
	want := []string{standardExpected, githubExpected, slackExpected}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("signatures (-got +want):\n%s", diff)
	}
}

// TestSignMatchesSchemeSigners checks Sign (which shares the verifier's signed-content code)
// against the one-line signers, which compute the signed string independently.
func TestSignMatchesSchemeSigners(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"id":"` + stripeID + `","object":"event"}`)
	sw, err := webhook.SignStandardWebhooks(whsecA, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}
	want := map[webhook.Scheme]map[string]string{
		webhook.StandardWebhooks: {"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": sw},
		webhook.Stripe:           {"Stripe-Signature": webhook.SignStripe(secretA, ts, body)},
		webhook.GitHub:           {"X-Hub-Signature-256": webhook.SignGitHub(secretA, body), "X-GitHub-Delivery": "msg_1"},
		webhook.Slack:            {"X-Slack-Signature": webhook.SignSlack(secretA, ts, body), "X-Slack-Request-Timestamp": "1700000000"},
	}
	for _, src := range sources(nil)[:4] {
		got, err := webhook.Sign(src, "msg_1", ts, body)
		if err != nil {
			t.Fatalf("Sign(%v): %v", src.Scheme, err)
		}
		if diff := cmp.Diff(got, want[src.Scheme]); diff != "" {
			t.Errorf("Sign(%v) (-got +want):\n%s", src.Scheme, diff)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"` + stripeID + `","type":"invoice.paid","data":{"object":{"id":"in_1"}}}`)
	for _, src := range sources(nil) {
		t.Run(src.Name, func(t *testing.T) {
			v := newVerifier(t, now, []webhook.Source{src}, nil)
			h, err := webhook.Sign(src, "evt_42", now.Add(-time.Minute), body)
			if err != nil {
				t.Fatal(err)
			}
			got := v.Verify(context.Background(), src.Name, webhook.Map(h), body)
			if !got.Valid || got.Reason != webhook.OK {
				t.Fatalf("Verify = %+v; want valid", got)
			}
			flipped := append([]byte(nil), body...)
			flipped[len(flipped)/2] ^= 1
			if got := v.Verify(context.Background(), src.Name, webhook.Map(h), flipped); got.Valid || got.Reason != webhook.NoMatchingSignature {
				t.Errorf("Verify with one body bit flipped = %+v; want %v", got, webhook.NoMatchingSignature)
			}
		})
	}
}

// TestGenericSignedString checks the generic scheme's signed string independently of Sign.
func TestGenericSignedString(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := webhook.Source{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}, Generic: webhook.GenericConfig{
		SignatureHeader: "X-Sig", Prefix: "sha256=", TimestampHeader: "X-Ts", IDHeader: "X-Id", Template: "{id}|{timestamp}|{body}|end",
	}}
	v := newVerifier(t, now, []webhook.Source{src}, nil)
	body := []byte("payload")
	// The signed string is rebuilt by hand and signed with the GitHub signer, which computes
	// HMAC-SHA256 over exactly its input, with no code shared with the template.
	sig := webhook.SignGitHub(secretA, []byte("id1|1700000000|payload|end"))
	h := webhook.Map{"x-sig": sig, "x-ts": "1700000000", "x-id": "id1"}
	if got := v.Verify(context.Background(), "g", h, body); !got.Valid {
		t.Errorf("Verify = %+v; want valid", got)
	}
}

func TestRefusals(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	v := newVerifier(t, now, sources(nil), nil)
	sign := func(sc webhook.Scheme) webhook.Map {
		h, err := webhook.Sign(sources(nil)[sc-1], "msg_1", now, body)
		if err != nil {
			t.Fatal(err)
		}
		return webhook.Map(h)
	}
	with := func(h webhook.Map, k, v string) webhook.Map {
		out := webhook.Map{}
		for kk, vv := range h {
			out[kk] = vv
		}
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
		return out
	}
	std, stripe, gh, slack, gen := sign(webhook.StandardWebhooks), sign(webhook.Stripe), sign(webhook.GitHub), sign(webhook.Slack), sign(webhook.Generic)
	stdSig := std["webhook-signature"]
	stripeSig := stripe["Stripe-Signature"]
	ghSig := gh["X-Hub-Signature-256"]
	slackSig := slack["X-Slack-Signature"]

	tests := []struct {
		name   string
		source string
		h      webhook.Map
		body   []byte
		want   webhook.Reason
	}{
		{"unknown source", "nope", std, body, webhook.UnknownSource},
		{"too large", "standard_webhooks", std, make([]byte, webhook.DefaultMaxPayload+1), webhook.TooLarge},
		{"nil headers", "github", nil, body, webhook.MissingHeader},

		{"standard: no id", "standard_webhooks", with(std, "webhook-id", ""), body, webhook.MissingHeader},
		{"standard: no timestamp", "standard_webhooks", with(std, "webhook-timestamp", ""), body, webhook.MissingHeader},
		{"standard: no signature", "standard_webhooks", with(std, "webhook-signature", ""), body, webhook.MissingHeader},
		{"standard: signed timestamp +1", "standard_webhooks", with(std, "webhook-timestamp", "1700000001"), body, webhook.NoMatchingSignature},
		{"standard: timestamp with sign", "standard_webhooks", with(std, "webhook-timestamp", "+1700000000"), body, webhook.BadFormat},
		{"standard: timestamp fraction", "standard_webhooks", with(std, "webhook-timestamp", "1700000000.0"), body, webhook.BadFormat},
		{"standard: truncated", "standard_webhooks", with(std, "webhook-signature", stdSig[:len(stdSig)-4]), body, webhook.BadFormat},
		{"standard: v1a version", "standard_webhooks", with(std, "webhook-signature", "v1a"+stdSig[2:]), body, webhook.NoMatchingSignature},
		{"standard: v2 version", "standard_webhooks", with(std, "webhook-signature", "v2"+stdSig[2:]), body, webhook.NoMatchingSignature},
		{"standard: no comma", "standard_webhooks", with(std, "webhook-signature", "v1"), body, webhook.BadFormat},
		{"standard: id with a control byte", "standard_webhooks", with(std, "webhook-id", "msg\n1"), body, webhook.BadFormat},
		{"standard: id too long", "standard_webhooks", with(std, "webhook-id", strings.Repeat("m", 257)), body, webhook.BadFormat},
		{"standard: other id", "standard_webhooks", with(std, "webhook-id", "msg_2"), body, webhook.NoMatchingSignature},

		{"stripe: v0 only", "stripe", with(stripe, "Stripe-Signature", strings.Replace(stripeSig, "v1=", "v0=", 1)), body, webhook.NoMatchingSignature},
		{"stripe: truncated", "stripe", with(stripe, "Stripe-Signature", stripeSig[:len(stripeSig)-2]), body, webhook.BadFormat},
		{"stripe: no t", "stripe", with(stripe, "Stripe-Signature", stripeSig[strings.Index(stripeSig, ",")+1:]), body, webhook.BadFormat},
		{"stripe: two t", "stripe", with(stripe, "Stripe-Signature", "t=1700000000,"+stripeSig), body, webhook.BadFormat},
		{"stripe: other t", "stripe", with(stripe, "Stripe-Signature", strings.Replace(stripeSig, "t=1700000000", "t=1700000001", 1)), body, webhook.NoMatchingSignature},
		{"stripe: missing", "stripe", webhook.Map{}, body, webhook.MissingHeader},

		{"github: sha1 prefix", "github", with(gh, "X-Hub-Signature-256", "sha1="+ghSig[7:]), body, webhook.BadFormat},
		{"github: truncated", "github", with(gh, "X-Hub-Signature-256", ghSig[:len(ghSig)-1]), body, webhook.BadFormat},
		{"github: bad hex", "github", with(gh, "X-Hub-Signature-256", ghSig[:len(ghSig)-1]+"g"), body, webhook.BadFormat},
		{"github: one digit changed", "github", with(gh, "X-Hub-Signature-256", ghSig[:len(ghSig)-1]+string("10"[ghSig[len(ghSig)-1]&1])), body, webhook.NoMatchingSignature},

		{"slack: v1 prefix", "slack", with(slack, "X-Slack-Signature", "v1="+slackSig[3:]), body, webhook.BadFormat},
		{"slack: no timestamp", "slack", with(slack, "X-Slack-Request-Timestamp", ""), body, webhook.MissingHeader},
		{"slack: truncated", "slack", with(slack, "X-Slack-Signature", slackSig[:40]), body, webhook.BadFormat},

		{"generic: no id", "generic", with(gen, "x-event-id", ""), body, webhook.MissingHeader},
		{"generic: other id", "generic", with(gen, "x-event-id", "msg_2"), body, webhook.NoMatchingSignature},
		{"generic: no prefix", "generic", with(gen, "x-signature", strings.TrimPrefix(gen["x-signature"], "hmac-sha256=")), body, webhook.BadFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h webhook.Headers
			if tt.h != nil {
				h = tt.h
			}
			got := v.Verify(context.Background(), tt.source, h, tt.body)
			want := webhook.Result{Reason: tt.want}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("Verify (-got +want):\n%s", diff)
			}
		})
	}
}

// TestIDDotSplicing: the signed string "{id}.{timestamp}.{body}" can be split another way
// when the id contains a dot. A dotted id is refused, so no rearrangement of dots between the
// id, the timestamp and the body verifies; the genuine delivery (signed here by a sender that
// uses dotted ids) is refused too, by design.
func TestIDDotSplicing(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := sources(nil)[0]
	v := newVerifier(t, now, []webhook.Source{src}, nil)
	body := []byte("1700000000.rest")
	sig, err := webhook.SignStandardWebhooks(whsecA, "msg.123", now, body)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id, ts string
		body   string
		want   webhook.Reason
	}{
		{"genuine dotted id", "msg.123", "1700000000", "1700000000.rest", webhook.BadFormat},
		{"dot moved into the timestamp", "msg", "123.1700000000", "1700000000.rest", webhook.BadFormat},
		{"id part moved into the timestamp", "msg", "1231700000000", "1700000000.rest", webhook.BadFormat},
		{"timestamp moved into the id, body start into the timestamp", "msg.123.1700000000", "1700000000", "rest", webhook.BadFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := v.Verify(context.Background(), src.Name, webhook.Map{"webhook-id": tt.id, "webhook-timestamp": tt.ts, "webhook-signature": sig}, []byte(tt.body))
			if diff := cmp.Diff(got, webhook.Result{Reason: tt.want}); diff != "" {
				t.Errorf("Verify(id %q, ts %q, body %q) (-got +want):\n%s", tt.id, tt.ts, tt.body, diff)
			}
		})
	}
	// The one split that a verifier cannot refuse by the id's form: the sender itself signed
	// the dotted id "msg.123", and the forger reads it as id "msg", timestamp "123". The
	// signature matches, and only the tolerance refuses it; it needs a sender that signs
	// dotted ids, whose own deliveries are refused (above), so it cannot go unnoticed.
	got := v.Verify(context.Background(), src.Name, webhook.Map{"webhook-id": "msg", "webhook-timestamp": "123", "webhook-signature": sig}, []byte("1700000000.1700000000.rest"))
	if got.Valid || got.Reason != webhook.Stale {
		t.Errorf("Verify of the id-suffix split = %+v; want reason %v", got, webhook.Stale)
	}
}

func TestGenericSeparators(t *testing.T) {
	now := time.Unix(1700000000, 0)
	src := webhook.Source{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}, Generic: webhook.GenericConfig{
		SignatureHeader: "X-Sig", TimestampHeader: "X-Ts", IDHeader: "X-Id", Template: "{id}:{timestamp}.{body}",
	}}
	v := newVerifier(t, now, []webhook.Source{src}, nil)
	// "a:b" + ":1700000000." + body is also "a" + ":b:1700000000." ...: ids with ':' are refused.
	h, err := webhook.Sign(src, "a", now, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Verify(context.Background(), "g", webhook.Map(h), []byte("x")); !got.Valid {
		t.Errorf("Verify = %+v; want valid", got)
	}
	h["x-id"] = "a:b"
	if got := v.Verify(context.Background(), "g", webhook.Map(h), []byte("x")); got.Reason != webhook.BadFormat {
		t.Errorf("Verify with the separator in the id = %+v; want %v", got, webhook.BadFormat)
	}
	for _, tmpl := range []string{"{id}{body}", "{timestamp}1{body}", "{timestamp}{id}:{body}"} {
		src.Generic.Template = tmpl
		if _, err := webhook.New(webhook.Config{Sources: []webhook.Source{src}}); err == nil {
			t.Errorf("New with template %q: no error; want one (ambiguous split)", tmpl)
		}
	}
}

func TestTolerance(t *testing.T) {
	ts := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	tol := webhook.DefaultTolerance
	tests := []struct {
		name string
		now  time.Time
		want webhook.Reason
	}{
		{"exactly tolerance in the past", ts.Add(tol), webhook.OK},
		{"one second too old", ts.Add(tol + time.Second), webhook.Stale},
		{"one nanosecond too old", ts.Add(tol + 1), webhook.Stale},
		{"exactly tolerance in the future", ts.Add(-tol), webhook.OK},
		{"one second too far ahead", ts.Add(-tol - time.Second), webhook.Future},
		{"now", ts, webhook.OK},
	}
	for _, src := range sources(nil) {
		for _, tt := range tests {
			t.Run(src.Name+"/"+tt.name, func(t *testing.T) {
				v := newVerifier(t, tt.now, []webhook.Source{src}, nil)
				h, err := webhook.Sign(src, "evt_1", ts, body)
				if err != nil {
					t.Fatal(err)
				}
				got := v.Verify(context.Background(), src.Name, webhook.Map(h), body)
				want := tt.want
				if src.Scheme == webhook.GitHub {
					want = webhook.OK // no timestamp: tolerance does not apply
				}
				if got.Reason != want || got.Valid != (want == webhook.OK) {
					t.Errorf("Verify = %+v; want reason %v", got, want)
				}
				if src.Scheme != webhook.GitHub && !got.Timestamp.Equal(ts) {
					t.Errorf("Timestamp = %v; want %v (set once the signature verified)", got.Timestamp, ts)
				}
			})
		}
	}
}

func TestRotation(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	for _, src := range sources(nil) {
		t.Run(src.Name, func(t *testing.T) {
			old, cur := secretA, secretB
			if src.Scheme == webhook.StandardWebhooks {
				old, cur = whsecA, whsecB
			}
			// The sender signs with the old secret only; the receiver holds the new one first.
			sender := src
			sender.Secrets = []string{old}
			h, err := webhook.Sign(sender, "evt_1", now, body)
			if err != nil {
				t.Fatal(err)
			}
			receiver := src
			receiver.Secrets = []string{cur, old}
			v := newVerifier(t, now, []webhook.Source{receiver}, nil)
			if got := v.Verify(context.Background(), src.Name, webhook.Map(h), body); !got.Valid {
				t.Errorf("Verify with the old secret second in the list = %+v; want valid", got)
			}
			receiver.Secrets = []string{cur}
			v = newVerifier(t, now, []webhook.Source{receiver}, nil)
			if got := v.Verify(context.Background(), src.Name, webhook.Map(h), body); got.Reason != webhook.NoMatchingSignature {
				t.Errorf("Verify after the old secret was removed = %+v; want %v", got, webhook.NoMatchingSignature)
			}
		})
	}
}

// TestMultipleSignatures: a sender in rotation sends one signature per secret; a header
// whose only valid signature is not the first one verifies.
func TestMultipleSignatures(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"id":"evt_1"}`)
	sw, err := webhook.SignStandardWebhooks(whsecA, "msg_1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	bogus := "v1," + strings.Repeat("A", 43) + "="
	stripe := webhook.SignStripe(secretA, now, body)
	tests := []struct {
		source string
		h      webhook.Map
	}{
		{"standard_webhooks", webhook.Map{"webhook-id": "msg_1", "webhook-timestamp": "1700000000", "webhook-signature": "v2,xyz " + bogus + "  " + sw}},
		{"stripe", webhook.Map{"stripe-signature": "t=1700000000,v1=" + strings.Repeat("0", 64) + ",v0=abc," + stripe[strings.Index(stripe, "v1="):]}},
	}
	v := newVerifier(t, now, sources(nil), nil)
	for _, tt := range tests {
		if got := v.Verify(context.Background(), tt.source, tt.h, body); !got.Valid {
			t.Errorf("%s: Verify(%v) = %+v; want valid", tt.source, tt.h, got)
		}
	}
}

func TestHeaderLookup(t *testing.T) {
	tests := []struct {
		name   string
		h      webhook.Headers
		wantV  string
		wantOK bool
	}{
		{"map exact", webhook.Map{"webhook-id": "a"}, "a", true},
		{"map other case", webhook.Map{"Webhook-ID": "a"}, "a", true},
		{"map ambiguous", webhook.Map{"Webhook-Id": "a", "WEBHOOK-ID": "b"}, "", false},
		{"map same value twice", webhook.Map{"Webhook-Id": "a", "WEBHOOK-ID": "a"}, "a", true},
		{"map absent", webhook.Map{"x": "a"}, "", false},
		{"http canonical", webhook.HTTPHeader{"Webhook-Id": {"a"}}, "a", true},
		{"http two values", webhook.HTTPHeader{"Webhook-Id": {"a", "b"}}, "", false},
		{"func", webhook.HeaderFunc(func(n string) (string, bool) { return n, true }), "webhook-id", true},
	}
	for _, tt := range tests {
		v, ok := tt.h.Lookup("webhook-id")
		if v != tt.wantV || ok != tt.wantOK {
			t.Errorf("%s: Lookup = %q, %v; want %q, %v", tt.name, v, ok, tt.wantV, tt.wantOK)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	short := "short-secret-of-23-bytes"[:23]
	tests := []struct {
		name      string
		srcs      []webhook.Source
		wantField string
		wantMsg   string
	}{
		{"short secret", []webhook.Source{
			{Name: "ok", Scheme: webhook.GitHub, Secrets: []string{secretA}},
			{Name: "ok2", Scheme: webhook.GitHub, Secrets: []string{secretA}},
			{Name: "stripe", Scheme: webhook.Stripe, Secrets: []string{short}},
		}, "sources[2].secrets[0]", "secret is 23 bytes, need at least 24"},
		{"short decoded whsec", []webhook.Source{{Name: "sw", Scheme: webhook.StandardWebhooks, Secrets: []string{whsecA, "whsec_c2hvcnQ="}}},
			"sources[0].secrets[1]", "secret is 5 bytes"},
		{"bad base64", []webhook.Source{{Name: "sw", Scheme: webhook.StandardWebhooks, Secrets: []string{"whsec_!!!"}}},
			"sources[0].secrets[0]", "base64"},
		{"no secrets", []webhook.Source{{Name: "gh", Scheme: webhook.GitHub}}, "sources[0].secrets", "at least one"},
		{"bad name", []webhook.Source{{Name: "a:b", Scheme: webhook.GitHub, Secrets: []string{secretA}}}, "sources[0].name", "name"},
		{"duplicate name", []webhook.Source{{Name: "a", Scheme: webhook.GitHub, Secrets: []string{secretA}}, {Name: "a", Scheme: webhook.Slack, Secrets: []string{secretA}}}, "sources[1].name", "duplicate"},
		{"no scheme", []webhook.Source{{Name: "a", Secrets: []string{secretA}}}, "sources[0].scheme", "unknown scheme"},
		{"replay without store", []webhook.Source{{Name: "a", Scheme: webhook.GitHub, Secrets: []string{secretA}, Replay: true}}, "sources[0].replay", "replay store"},
		{"replay ttl too short", []webhook.Source{{Name: "a", Scheme: webhook.Slack, Secrets: []string{secretA}, ReplayTTL: 10 * time.Minute}}, "sources[0].replay_ttl", "longer than twice"},
		{"generic without body", []webhook.Source{{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}, Generic: webhook.GenericConfig{SignatureHeader: "x", Template: "{id}"}}}, "sources[0].generic.template", "{body}"},
		{"generic unsigned timestamp", []webhook.Source{{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}, Generic: webhook.GenericConfig{SignatureHeader: "x", TimestampHeader: "t"}}}, "sources[0].generic.template", "not signed"},
		{"generic unknown placeholder", []webhook.Source{{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}, Generic: webhook.GenericConfig{SignatureHeader: "x", Template: "{ts}.{body}"}}}, "sources[0].generic.template", "unknown placeholder"},
		{"generic no header", []webhook.Source{{Name: "g", Scheme: webhook.Generic, Secrets: []string{secretA}}}, "sources[0].generic.signature_header", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(webhook.Config{Sources: tt.srcs})
			var ce *fielderr.Error
			if !errors.As(err, &ce) {
				t.Fatalf("New error = %v; want a *fielderr.Error", err)
			}
			if ce.Path != tt.wantField || !strings.Contains(ce.Msg(), tt.wantMsg) {
				t.Errorf("fielderr.Error = %q, %q; want field %q, message containing %q", ce.Path, ce.Msg(), tt.wantField, tt.wantMsg)
			}
			for _, src := range tt.srcs {
				for _, s := range src.Secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q contains a secret", err)
					}
				}
			}
		})
	}
}

func TestConfigErrorMessage(t *testing.T) {
	_, err := webhook.New(webhook.Config{Sources: []webhook.Source{{Name: "stripe", Scheme: webhook.Stripe, Secrets: []string{"whsec_short"}}}})
	got := err.Error()
	want := `sources[0].secrets[0]: source "stripe": secret is 11 bytes, need at least 24`
	if got != want {
		t.Errorf("error = %q; want %q", got, want)
	}
}

func TestStrings(t *testing.T) {
	var got []string
	for r := webhook.OK; r <= webhook.Unavailable+1; r++ {
		got = append(got, r.String())
	}
	want := []string{"ok", "missing_header", "bad_format", "stale", "future", "no_matching_signature", "duplicate", "too_large", "unknown_source", "unavailable", "invalid"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Reason strings (-got +want):\n%s", diff)
	}
	for sc := webhook.StandardWebhooks; sc <= webhook.Generic; sc++ {
		if got, ok := webhook.ParseScheme(sc.String()); got != sc || !ok {
			t.Errorf("ParseScheme(%q) = %v, %v; want %v, true", sc.String(), got, ok, sc)
		}
	}
	if _, ok := webhook.ParseScheme("unspecified"); ok {
		t.Error(`ParseScheme("unspecified") ok; want refused`)
	}
}
