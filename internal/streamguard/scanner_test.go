package streamguard

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2"
)

// connBytes is what a client sends: the preface, SETTINGS, then for each stream HEADERS,
// DATA and, for every other one, RST_STREAM.
func connBytes(t testing.TB, streams int) (b []byte, resets int) {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	for i := range streams {
		id := uint32(2*i + 1)
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte{0x83, 0x86}, EndHeaders: true})
		_ = fr.WriteData(id, i%2 == 1, bytes.Repeat([]byte{byte(frameRSTStream)}, 5+i)) // payload that looks like frame types
		if i%2 == 0 {
			_ = fr.WriteRSTStream(id, http2.ErrCodeCancel)
			resets++
		}
	}
	return buf.Bytes(), resets
}

func TestFrameScannerCountsResetsWhateverTheReads(t *testing.T) {
	b, want := connBytes(t, 9)
	for size := 1; size <= len(b); size++ {
		f := frameScanner{preface: len(clientPreface)}
		got := 0
		for p := b; len(p) > 0; {
			n := min(size, len(p))
			got += f.scan(p[:n])
			p = p[n:]
		}
		if got != want {
			t.Fatalf("reads of %d bytes: got %d resets, want %d", size, got, want)
		}
	}
}

// FuzzFrameScanner: a stream split anywhere counts as it does whole, and never panics.
func FuzzFrameScanner(f *testing.F) {
	b, _ := connBytes(f, 5)
	f.Add(b, 7)
	f.Add(b, 24)
	f.Add([]byte(clientPreface+"\x00\x00\x04\x03\x00\x00\x00\x00\x01\x00\x00\x00\x08"), 30)
	f.Fuzz(func(t *testing.T, b []byte, at int) {
		whole := frameScanner{preface: len(clientPreface)}
		want := whole.scan(b)
		if len(b) == 0 {
			return
		}
		at = (at%len(b) + len(b)) % len(b)
		split := frameScanner{preface: len(clientPreface)}
		if got := split.scan(b[:at]) + split.scan(b[at:]); got != want {
			t.Fatalf("split at %d: got %d resets, want %d", at, got, want)
		}
	})
}
