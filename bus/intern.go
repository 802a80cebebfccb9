package bus

import "sync"

// internTable maps the bytes of a string to one shared copy. It is bounded
// by forgetting everything once it holds internMax strings, which needs no
// bookkeeping per hit and, unlike a set-associative cache, never lets a few
// names that collide push each other out: a poll cycle of a few hundred
// distinct tags decodes without allocating from the second batch on. A miss
// costs one allocation, the same as not interning at all.
type internTable struct {
	m map[string]string
}

const (
	internMax = 4096 // strings per Decoder, about 150 KiB with the map
	// Longer strings are rarely names that repeat, and hashing them would
	// cost more than it saves.
	internMaxLen = 256
)

var decoderPool = sync.Pool{New: func() any { return new(Decoder) }}

func (t *internTable) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	if s, ok := t.m[string(b)]; ok {
		return s
	}
	if t.m == nil {
		t.m = make(map[string]string)
	} else if len(t.m) >= internMax {
		clear(t.m)
	}
	s := string(b)
	t.m[s] = s
	return s
}
