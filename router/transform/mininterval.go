package transform

import (
	"time"

	"github.com/ferry-gateway/ferry/bus"
)

// MinInterval limits the rate of each series (source, device, tag): it drops
// a record whose time is less than d away from the last forwarded record's.
//
// Time is the record's SourceTime, or its IngestTime for sources that leave
// SourceTime zero, never the wall clock, so a replay gives the same result as
// the live run. "Away" counts both ways: a record within d before the last
// forwarded one arrived out of order and is held back, while one more than d
// before it means the device clock was reset, and it passes and restarts the
// window rather than silencing the series until the clock catches up.
//
// As with Deadband, "forwarded" means accepted by the rest of the chain. State
// is per returned Middleware, bounded by MaxKeys and not locked, because the
// engine calls a route's chain from one goroutine. A d of zero or less
// forwards everything.
func MinInterval(d time.Duration) Middleware {
	if d <= 0 {
		return func(next Next) Next { return next }
	}
	m := &minInterval{d: int64(d), last: make(map[seriesKey]*int64)}
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			t := r.SourceTime
			if t == 0 {
				t = r.IngestTime
			}
			k := keyOf(r)
			last, seen := m.last[k]
			if !seen && len(m.last) >= MaxKeys {
				return next(r)
			}
			if seen {
				if delta := t - *last; delta < m.d && delta > -m.d {
					return false
				}
			}
			if !next(r) {
				return false
			}
			if !seen {
				last = new(int64)
				m.last[k.clone()] = last
			}
			*last = t
			return true
		}
	}
}

type minInterval struct {
	d    int64
	last map[seriesKey]*int64 // pointers, so that an update does not hash the key again
}
