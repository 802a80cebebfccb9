package opcua

import (
	"time"

	"github.com/gopcua/opcua/ua"
)

// Several Publish requests are outstanding at once, so the goroutines
// that wait for their responses hand them on in whatever order the
// scheduler runs them (and a server may answer out of order too). A
// reorder puts one subscription's NotificationMessages back into sequence
// number order before anything is emitted, and says which numbers are
// missing so they can be asked for with Republish.
//
// Sequence numbers are serial numbers: they wrap from 2^32-1 to 1 (0 is
// never used), so "later" is decided by the signed difference, which
// holds while fewer than 2^31 messages are in flight. A keep-alive carries
// no notifications and the number the next message will have, which tells
// the client that every number before it was sent. A new subscription
// starts at 1; a subscription re-created after a reconnect or a watchdog
// rebuild gets a new reorder.
type reorder struct {
	next    uint32 // the number to emit next
	horizon uint32 // one past the highest number the server is known to have used
	pending map[uint32]*ua.NotificationMessage
	since   time.Time // when next was found missing; zero while it is not
	started bool      // a message or keep-alive arrived
}

// maxPending bounds the messages held back behind a missing one; past it
// the missing ones are asked for at once, without waiting.
const maxPending = 1024

func newReorder() *reorder {
	return &reorder{next: 1, horizon: 1, pending: map[uint32]*ua.NotificationMessage{}}
}

// after reports whether sequence number a comes after b.
func after(a, b uint32) bool { return int32(a-b) > 0 }

// nextSeq is the number after seq, skipping 0.
func nextSeq(seq uint32) uint32 {
	if seq == ^uint32(0) {
		return 1
	}
	return seq + 1
}

// prevSeq is the number before seq, skipping 0.
func prevSeq(seq uint32) uint32 {
	if seq == 1 {
		return ^uint32(0)
	}
	return seq - 1
}

// span is how many numbers from..to (inclusive) holds, 0 skipped.
func span(from, to uint32) uint64 {
	n := uint64(to-from) + 1
	if from > to { // wrapped through 0, which is never used
		n--
	}
	return n
}

// take accepts msg when it is the next one and nothing is missing, the
// common case, without the allocation of add.
func (r *reorder) take(msg *ua.NotificationMessage) bool {
	if msg.SequenceNumber != r.next || r.holeAt() {
		return false
	}
	r.started = true
	r.next = nextSeq(r.next)
	r.horizon = r.next
	return true
}

// add takes a data message and returns the messages that can be emitted
// now, in order: none when msg is ahead of a missing one. dup reports a
// message already emitted, held, or given up on.
func (r *reorder) add(msg *ua.NotificationMessage, now time.Time) (ready []*ua.NotificationMessage, dup bool) {
	seq := msg.SequenceNumber
	r.started = true
	if seq == 0 || after(r.next, seq) {
		return nil, true
	}
	if _, held := r.pending[seq]; held {
		return nil, true
	}
	if after(nextSeq(seq), r.horizon) {
		r.horizon = nextSeq(seq)
	}
	if seq != r.next {
		r.pending[seq] = msg
		r.mark(now)
		return nil, false
	}
	ready = append(ready, msg)
	r.next = nextSeq(seq)
	return r.drain(ready, now), false
}

// drain appends the held messages that follow next.
func (r *reorder) drain(ready []*ua.NotificationMessage, now time.Time) []*ua.NotificationMessage {
	for {
		m, ok := r.pending[r.next]
		if !ok {
			break
		}
		delete(r.pending, r.next)
		ready = append(ready, m)
		r.next = nextSeq(r.next)
	}
	r.since = time.Time{}
	r.mark(now)
	return ready
}

// mark starts the wait for next when it is missing.
func (r *reorder) mark(now time.Time) {
	if r.since.IsZero() && r.holeAt() {
		r.since = now
	}
}

// holeAt reports whether next is missing: a later number was used.
func (r *reorder) holeAt() bool { return after(r.horizon, r.next) }

// keepAlive notes the number a keep-alive announced as the next one.
func (r *reorder) keepAlive(seq uint32, now time.Time) {
	if seq == 0 {
		return
	}
	if !r.started {
		// The first word from the subscription: a server that does not
		// start at 1 is believed rather than reported as a gap.
		r.started = true
		r.next, r.horizon = seq, seq
		return
	}
	if after(seq, r.horizon) {
		r.horizon = seq
		r.mark(now)
	}
}

// available notes the server's AvailableSequenceNumbers: messages it sent
// and keeps for Republish.
func (r *reorder) available(seqs []uint32, now time.Time) {
	for _, seq := range seqs {
		if seq != 0 && !after(r.next, seq) && after(nextSeq(seq), r.horizon) {
			r.horizon = nextSeq(seq)
		}
	}
	r.mark(now)
}

// due reports when the missing run must be asked for: zero when nothing
// is missing.
func (r *reorder) due(wait time.Duration) time.Time {
	if !r.holeAt() {
		return time.Time{}
	}
	if len(r.pending) >= maxPending {
		return r.since
	}
	return r.since.Add(wait)
}

// missing returns the run of missing numbers from next, up to the first
// held message or the horizon.
func (r *reorder) missing() (from, to uint32, ok bool) {
	if !r.holeAt() {
		return 0, 0, false
	}
	to = r.next
	for {
		n := nextSeq(to)
		if n == r.horizon {
			break
		}
		if _, held := r.pending[n]; held {
			break
		}
		to = n
	}
	return r.next, to, true
}

// skip gives up on next and returns the messages that can be emitted
// after it.
func (r *reorder) skip(now time.Time) []*ua.NotificationMessage {
	r.next = nextSeq(r.next)
	return r.drain(nil, now)
}

// skipTo gives up on every number up to and including to.
func (r *reorder) skipTo(to uint32, now time.Time) []*ua.NotificationMessage {
	r.next = nextSeq(to)
	return r.drain(nil, now)
}

// flush gives up on every missing number and returns everything held, in
// order, with the runs that were missing.
func (r *reorder) flush(now time.Time) (ready []*ua.NotificationMessage, gaps [][2]uint32) {
	for {
		from, to, ok := r.missing()
		if !ok {
			return ready, gaps
		}
		gaps = append(gaps, [2]uint32{from, to})
		ready = append(ready, r.skipTo(to, now)...)
	}
}
