package redisstore

import (
	"strings"
	"testing"
)

// TestSlotTags: every Cluster slot has a name of at most 3 characters of [0-9A-Za-z] in it.
func TestSlotTags(t *testing.T) {
	for slot := range numSlots {
		tag := slotTag(slot)
		if len(tag) == 0 || len(tag) > 3 || strings.ContainsAny(tag, "{}") {
			t.Fatalf("slot %d: tag %q", slot, tag)
		}
		if got := keySlot("{" + tag + "}"); got != slot {
			t.Fatalf("slot %d: tag %q is in slot %d", slot, tag, got)
		}
	}
}

// TestNames: the names of one tag are in one slot (that of older Wardens' keys of the tag when
// the prefix has no "{") and have one length (the batcher cuts a Take's names by it), whatever
// the tag and the prefix; another tag or key gives another field.
func TestNames(t *testing.T) {
	for _, prefix := range []string{"warden:rl:", "a{b", "p}"} {
		s, err := New(&struct{ Client }{}, Options{Prefix: prefix, Unbatched: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, tag := range []string{"bench", "", "a}b", "{x", "\x00\xff", "tenant-7"} {
			// Shard's slot; without a "{" in the prefix, the slot of older Wardens' keys (an
			// empty tag gave them none: each key had its own).
			want := keySlot(s.name(tag, ""))
			if !strings.Contains(prefix, "{") && tag != "" && want != keySlot(prefix+"{"+tag+"}") {
				t.Errorf("prefix %q, tag %q: slot %d, older Wardens' %d", prefix, tag, want, keySlot(prefix+"{"+tag+"}"))
			}
			n0 := s.name(tag, "k0")
			for _, key := range []string{"k0", "k1", "", strings.Repeat("x", 300)} {
				n := s.name(tag, key)
				if keySlot(n) != want || len(n) != len(n0) || !strings.HasPrefix(n, prefix+"{") {
					t.Errorf("prefix %q, tag %q, key %q: name %q (slot %d), want slot %d, length %d", prefix, tag, key, n, keySlot(n), want, len(n0))
				}
				if key != "k0" && n[len(n)-fieldLen:] == n0[len(n0)-fieldLen:] {
					t.Errorf("tag %q: keys k0 and %q share a field", tag, key)
				}
			}
			if m := s.name(tag+"x", "k0"); m[len(m)-fieldLen:] == n0[len(n0)-fieldLen:] {
				t.Errorf("tags %q and %q share the field of k0", tag, tag+"x")
			}
		}
	}
}
