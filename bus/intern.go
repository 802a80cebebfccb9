package bus

import (
	"hash/maphash"
	"sync"
)

// internTable is a 2-way set-associative cache of strings keyed by their
// bytes. Being a fixed array it needs no eviction policy to stay bounded: a
// new string pushes out the older of its set. A miss costs one allocation,
// the same as not interning at all.
type internTable struct {
	sets [internSets][2]string
}

const (
	internSets = 2048 // 4096 strings, 64 KiB of headers per Decoder
	// Longer strings are rarely names that repeat, and hashing them would
	// cost more than it saves.
	internMaxLen = 256
)

var internSeed = maphash.MakeSeed()

var decoderPool = sync.Pool{New: func() any { return new(Decoder) }}

func (t *internTable) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	set := &t.sets[maphash.Bytes(internSeed, b)&(internSets-1)]
	if set[0] == string(b) {
		return set[0]
	}
	if set[1] == string(b) {
		set[0], set[1] = set[1], set[0]
		return set[0]
	}
	s := string(b)
	set[1] = set[0]
	set[0] = s
	return s
}

// internPrev first compares with the same field of the previous record,
// which in a batch from one device usually matches without hashing.
func (t *internTable) internPrev(b []byte, prev *string) string {
	if string(b) == *prev {
		return *prev
	}
	s := t.intern(b)
	*prev = s
	return s
}
