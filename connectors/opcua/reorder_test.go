package opcua

import (
	"slices"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
)

func msg(seq uint32) *ua.NotificationMessage { return &ua.NotificationMessage{SequenceNumber: seq} }

func seqs(ms []*ua.NotificationMessage) []uint32 {
	out := make([]uint32, len(ms))
	for i, m := range ms {
		out[i] = m.SequenceNumber
	}
	return out
}

// feed hands arrivals to r (0 < x: data message x; x < 0: keep-alive
// announcing -x) and returns the numbers emitted, in emission order.
func feed(r *reorder, now time.Time, arrivals ...int64) []uint32 {
	var out []uint32
	for _, a := range arrivals {
		if a < 0 {
			r.keepAlive(uint32(-a), now)
			continue
		}
		m := msg(uint32(a))
		if r.take(m) {
			out = append(out, m.SequenceNumber)
			continue
		}
		ready, _ := r.add(m, now)
		out = append(out, seqs(ready)...)
	}
	return out
}

func TestReorder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const wait = 100 * time.Millisecond
	const top = int64(^uint32(0))

	cases := []struct {
		name      string
		start     uint32 // first number, announced by a keep-alive; 0: a new subscription (1)
		arrivals  []int64
		want      []uint32
		missing   [2]uint32 // the run missing afterwards; zero: none
		remaining int       // held messages
	}{
		{name: "in order", arrivals: []int64{1, 2, 3}, want: []uint32{1, 2, 3}},
		{name: "reversed", arrivals: []int64{3, 2, 1}, want: []uint32{1, 2, 3}},
		{name: "shuffled with keep-alives", arrivals: []int64{2, -4, 1, 4, 3, -5}, want: []uint32{1, 2, 3, 4}},
		{name: "duplicate", arrivals: []int64{1, 2, 2, 1, 3}, want: []uint32{1, 2, 3}},
		{name: "held duplicate", arrivals: []int64{1, 3, 3}, want: []uint32{1}, missing: [2]uint32{2, 2}, remaining: 1},
		{name: "gap", arrivals: []int64{1, 4, 6}, want: []uint32{1}, missing: [2]uint32{2, 3}, remaining: 2},
		{name: "keep-alive announces a gap", arrivals: []int64{1, 2, -5}, want: []uint32{1, 2}, missing: [2]uint32{3, 4}},
		{name: "stale keep-alive", arrivals: []int64{1, 2, 3, -2}, want: []uint32{1, 2, 3}},
		{name: "first keep-alive sets the start", start: 41, arrivals: []int64{42, 41}, want: []uint32{41, 42}},
		{name: "wrap-around", start: ^uint32(0) - 1, arrivals: []int64{1, top, top - 1, 2}, want: []uint32{^uint32(0) - 1, ^uint32(0), 1, 2}},
		{name: "gap across the wrap", start: ^uint32(0), arrivals: []int64{2}, missing: [2]uint32{^uint32(0), 1}, remaining: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReorder()
			if tc.start != 0 {
				r.keepAlive(tc.start, t0)
			}
			got := feed(r, t0, tc.arrivals...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("emitted %v, want %v", got, tc.want)
			}
			from, to, ok := r.missing()
			if want := tc.missing != [2]uint32{}; ok != want || (ok && [2]uint32{from, to} != tc.missing) {
				t.Errorf("missing = %d-%d (%v), want %v", from, to, ok, tc.missing)
			}
			if len(r.pending) != tc.remaining {
				t.Errorf("%d held, want %d", len(r.pending), tc.remaining)
			}
			if due := r.due(wait); ok != !due.IsZero() || (ok && !due.Equal(t0.Add(wait))) {
				t.Errorf("due %v, want %v after the hole was seen", due, wait)
			}
		})
	}
}

// TestReorderRecover walks a gap through recovery: the first missing
// number comes back (Republish), the second is given up on, and what was
// held behind them follows in order.
func TestReorderRecover(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newReorder()
	feed(r, t0, 1, 4, 5)
	from, to, ok := r.missing()
	if !ok || from != 2 || to != 3 {
		t.Fatalf("missing = %d-%d %v, want 2-3", from, to, ok)
	}
	ready, dup := r.add(msg(2), t0)
	if dup || !slices.Equal(seqs(ready), []uint32{2}) {
		t.Fatalf("republished 2: ready %v dup %v", seqs(ready), dup)
	}
	if got := seqs(r.skip(t0)); !slices.Equal(got, []uint32{4, 5}) {
		t.Fatalf("after giving up 3: %v, want [4 5]", got)
	}
	if _, _, ok := r.missing(); ok {
		t.Fatal("still missing after recovery")
	}
	// 3 turns up late: already given up, so it must not be emitted out of order.
	if ready, dup := r.add(msg(3), t0); !dup || len(ready) > 0 {
		t.Fatalf("late 3: ready %v dup %v, want a duplicate", seqs(ready), dup)
	}
	if !r.take(msg(6)) {
		t.Fatal("6 not taken in order after the gap")
	}
}

// TestReorderAvailable: the server's AvailableSequenceNumbers name a
// message that never came; numbers already emitted are ignored.
func TestReorderAvailable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	r := newReorder()
	feed(r, t0, 1, 2)
	r.available([]uint32{1, 2}, t0)
	if _, _, ok := r.missing(); ok {
		t.Fatal("missing after only emitted numbers were listed")
	}
	r.available([]uint32{2, 3}, t0)
	if from, to, ok := r.missing(); !ok || from != 3 || to != 3 {
		t.Fatalf("missing = %d-%d %v, want 3-3", from, to, ok)
	}
}

// TestReorderFlush: a subscription that goes emits what it held, in
// order, and names every missing run.
func TestReorderFlush(t *testing.T) {
	r := newReorder()
	feed(r, time.Unix(1000, 0), 3, 7, 6, -10)
	ready, gaps := r.flush(time.Unix(1000, 0))
	if got := seqs(ready); !slices.Equal(got, []uint32{3, 6, 7}) {
		t.Errorf("flushed %v, want [3 6 7]", got)
	}
	if want := [][2]uint32{{1, 2}, {4, 5}, {8, 9}}; !slices.Equal(gaps, want) {
		t.Errorf("gaps %v, want %v", gaps, want)
	}
}

func TestSpan(t *testing.T) {
	for _, tc := range []struct {
		from, to uint32
		want     uint64
	}{{5, 5, 1}, {2, 3, 2}, {^uint32(0), 1, 2}, {^uint32(0) - 1, 2, 4}} {
		if got := span(tc.from, tc.to); got != tc.want {
			t.Errorf("span(%d, %d) = %d, want %d", tc.from, tc.to, got, tc.want)
		}
	}
	if nextSeq(^uint32(0)) != 1 || prevSeq(1) != ^uint32(0) {
		t.Error("0 is not skipped at the wrap")
	}
}
