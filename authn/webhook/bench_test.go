package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wardenhq/warden/authn/webhook"
)

// BenchmarkVerify measures Verify per scheme for a 1 KiB body, with gRPC-style lower-case
// header maps, without replay protection and with the memory replay store (the same event
// every iteration, so Duplicate after the first: the cost of the store's lookup).
func BenchmarkVerify(b *testing.B) {
	now := time.Unix(1700000000, 0)
	body := append([]byte(`{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy",`), bytes.Repeat([]byte("x"), 1024)...)
	body = append(body[:1023], '}')
	for _, replay := range []bool{false, true} {
		for _, src := range sources(nil) {
			src.Replay = replay
			name := fmt.Sprintf("%s/replay=%v", src.Name, replay)
			b.Run(name, func(b *testing.B) {
				store := webhook.NewMemoryReplay(webhook.MemoryReplayConfig{MaxEntries: 1 << 30})
				v := newVerifier(b, now, []webhook.Source{src}, store)
				h, err := webhook.Sign(src, "evt_42", now, body)
				if err != nil {
					b.Fatal(err)
				}
				lower := webhook.Map{}
				for k, val := range h {
					lower[string(bytes.ToLower([]byte(k)))] = val
				}
				ctx := context.Background()
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					r := v.Verify(ctx, src.Name, lower, body)
					if r.Reason != webhook.OK && r.Reason != webhook.Duplicate {
						b.Fatalf("Verify = %+v", r)
					}
				}
			})
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	now := time.Unix(1700000000, 0)
	body := bytes.Repeat([]byte("x"), 1024)
	src := sources(nil)[0]
	v := newVerifier(b, now, []webhook.Source{src}, nil)
	h, err := webhook.Sign(src, "evt_42", now, body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r := v.Verify(context.Background(), src.Name, webhook.Map(h), body); !r.Valid {
				b.Fatalf("Verify = %+v", r)
			}
		}
	})
}

// TestVerifyAllocs guards the zero-allocation path: a valid delivery without replay
// protection, on a lower-case header map.
func TestVerifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	now := time.Unix(1700000000, 0)
	body := bytes.Repeat([]byte("x"), 1024)
	for _, src := range sources(nil) {
		v := newVerifier(t, now, []webhook.Source{src}, nil)
		h, err := webhook.Sign(src, "evt_42", now, body)
		if err != nil {
			t.Fatal(err)
		}
		lower := webhook.Map{}
		for k, val := range h {
			lower[string(bytes.ToLower([]byte(k)))] = val
		}
		got := testing.AllocsPerRun(100, func() {
			if r := v.Verify(context.Background(), src.Name, lower, body); !r.Valid {
				t.Fatalf("Verify = %+v", r)
			}
		})
		if got != 0 {
			t.Errorf("%s: Verify allocates %v times per call; want 0", src.Name, got)
		}
	}
}
