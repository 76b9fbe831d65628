package authn

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTimingAPIKeysUnknownIDAsWrongSecret: an unknown key id and a known id with a wrong
// secret take the same time (both answered from the cache, so only Authenticate's own work
// is measured), so the time of a refusal does not tell which ids exist. 20,000 interleaved
// samples each; the medians must differ by less than 1 µs and less than half an HMAC (the
// work an unknown id used to skip), whichever is smaller. Skipped under -short and the race
// detector.
func TestTimingAPIKeysUnknownIDAsWrongSecret(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("timing test: not under -short or -race")
	}
	ctx := context.Background()
	a := newTestAPIKeys(t, &MemoryKeyStore{}, &clock{t0})
	key, _, err := a.Create(ctx, KeySpec{Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := ParseAPIKey(key)
	if err != nil {
		t.Fatal(err)
	}
	wrong := formatAPIKey(livePrefix, pk.ID, strings.Repeat("x", len(pk.Secret)))
	unknown := formatAPIKey(livePrefix, "nobody000001", strings.Repeat("x", len(pk.Secret)))
	if _, r := a.Authenticate(ctx, wrong); r != BadSignature {
		t.Fatalf("wrong secret: got %v, want %v", r, BadSignature)
	}
	if _, r := a.Authenticate(ctx, unknown); r != Unknown {
		t.Fatalf("unknown id: got %v, want %v", r, Unknown)
	}

	const n = 20000
	u, w, h := make([]time.Duration, n), make([]time.Duration, n), make([]time.Duration, n)
	pepper := testPepper(t)
	var sink [digestLen]byte
	for i := range n {
		// Interleaved, so that a change of load on the machine weighs on both alike.
		start := time.Now()
		a.Authenticate(ctx, unknown)
		u[i] = time.Since(start)
		start = time.Now()
		a.Authenticate(ctx, wrong)
		w[i] = time.Since(start)
		start = time.Now()
		sink = pepper.Digest(pk.Secret)
		h[i] = time.Since(start)
	}
	_ = sink
	mu, mw, mh := median(u), median(w), median(h)
	limit := min(time.Microsecond, mh/2)
	diff := mu - mw
	if diff < 0 {
		diff = -diff
	}
	t.Logf("medians: unknown id %v, wrong secret %v (difference %v); one HMAC %v", mu, mw, diff, mh)
	if diff >= limit {
		t.Errorf("median difference %v between an unknown id (%v) and a wrong secret (%v), want < %v", diff, mu, mw, limit)
	}
}

func median(d []time.Duration) time.Duration {
	slices.Sort(d)
	return d[len(d)/2]
}
