package redisstore

import (
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"sync"
)

// Names of counters (see the README's "Redis storage"). The counters of the token bucket, the
// fixed window and the sliding window are fields of small Redis hashes: per Cluster hash slot,
// Options.Hashes hashes, and in them one field per counter. A counter's name, as the script
// gets it in KEYS, is its hash's key followed by its field:
//
//	Prefix + "{" + slotTag + "}" + 4 hex digits (the hash) + 12 bytes (the field)
//
// where slotTag is the shortest name of the Cluster slot of the Take's tag (slotTags), so that
// the counters of every tag of one slot share that slot's hashes and a Take stays in one slot,
// and the hash number and the field are bytes of SHA-256(uvarint(len(tag)) tag key). The
// sliding log keeps its sorted set under the whole name.
const (
	// fieldLen is the length of a counter's field in its hash (take.lua's FL).
	fieldLen = 12
	// defaultHashes is the default of Options.Hashes.
	defaultHashes = 1 << 14
	// maxHashes bounds Options.Hashes: the hash number is 16 bits of the digest.
	maxHashes = 1 << 16
)

// appendName appends the name of the counter key under tag to b (see above), without
// allocating once b has room.
func (s *Store) appendName(b []byte, tag, key string) []byte {
	start := len(b)
	b = binary.AppendUvarint(b, uint64(len(tag)))
	b = append(b, tag...)
	b = append(b, key...)
	d := sha256.Sum256(b[start:])
	b = append(b[:start], s.opts.Prefix...)
	b = append(b, '{')
	b = append(b, slotTag(tagSlot(tag))...)
	b = append(b, '}')
	h := int(binary.BigEndian.Uint16(d[:2])) % s.opts.Hashes
	const hex = "0123456789abcdef"
	b = append(b, hex[h>>12], hex[h>>8&15], hex[h>>4&15], hex[h&15])
	return append(b, d[2:2+fieldLen]...)
}

// name is the counter name of key under tag (see appendName).
func (s *Store) name(tag, key string) string {
	return string(s.appendName(nil, tag, key))
}

// tagSlot is the Cluster slot that the counters of tag live in: the slot of the name
// "{" + tag + "}", as for the keys of older Wardens (Prefix + "{" + tag + "}" + key).
func tagSlot(tag string) int {
	if tag != "" && !strings.Contains(tag, "}") {
		return int(crc16(tag)) % numSlots
	}
	return keySlot("{" + tag + "}") // a rare tag: allocating is fine
}

// slotTag is the shortest string of [0-9A-Za-z] (the first in that order among those of its
// length) whose Cluster slot is slot: every Warden derives the same one.
func slotTag(slot int) string {
	slotTagsOnce.Do(func() {
		const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		left := numSlots
		var buf [4]byte
		var walk func(n, depth int)
		walk = func(n, depth int) {
			if depth == n {
				s := int(crc16(string(buf[:n]))) % numSlots
				if slotTags[s] == "" {
					slotTags[s] = string(buf[:n])
					left--
				}
				return
			}
			for i := 0; i < len(alphabet) && left > 0; i++ {
				buf[depth] = alphabet[i]
				walk(n, depth+1)
			}
		}
		for n := 1; left > 0 && n <= len(buf); n++ {
			walk(n, 0)
		}
	})
	return slotTags[slot]
}

var (
	slotTagsOnce sync.Once
	slotTags     [numSlots]string
)
