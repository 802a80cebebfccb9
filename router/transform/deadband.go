package transform

import (
	"math"

	"github.com/ferry-gateway/ferry/bus"
)

// Deadband reports by exception: per series (source, device, tag) it drops a
// record whose value is within the band around the last forwarded value.
//
// A numeric value is within the band when it differs from the last forwarded
// one by at most abs, or by at most percent% of |last forwarded|. With both at
// zero only exact repeats are held back; a negative bound never matches. Booleans
// count as 0 and 1 (see bus.Value.Float), so abs >= 1 silences a digital tag.
// A value that is not numeric, or whose last forwarded value was not, is within
// the band only when it is Equal to that value. The first value of a series
// and any change of quality always pass.
//
// "Forwarded" means accepted by the rest of the chain (next returned true).
// A change that a later step held back, a rate limit say, is therefore still
// reported once that step lets it through, instead of being lost for as long
// as the value stays put.
//
// State is per returned Middleware and bounded by MaxKeys; see there. It is
// not locked: the engine calls a route's chain from one goroutine.
func Deadband(abs, percent float64) Middleware {
	d := &deadband{
		abs:  abs,
		frac: percent / 100,
		last: make(map[seriesKey]*deadbandState),
	}
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			k := keyOf(r)
			st, seen := d.last[k]
			if !seen && len(d.last) >= MaxKeys {
				return next(r)
			}
			if seen && st.quality == r.Quality && d.within(st.value, r.Value) {
				return false
			}
			// Kept before next runs: a later transform may rewrite them.
			v, q := r.Value, r.Quality
			if !next(r) {
				return false
			}
			if !seen {
				st = new(deadbandState)
				d.last[k.clone()] = st
			}
			st.value, st.quality = v, q
			return true
		}
	}
}

type deadband struct {
	abs, frac float64
	last      map[seriesKey]*deadbandState // pointers, so that an update does not hash the key again
}

type deadbandState struct {
	value   bus.Value
	quality bus.Quality
}

func (d *deadband) within(last, cur bus.Value) bool {
	// Equal first: it treats NaN as equal to NaN, which the arithmetic does not.
	if cur.Equal(last) {
		return true
	}
	c, ok := cur.Float()
	if !ok {
		return false
	}
	l, ok := last.Float()
	if !ok {
		return false
	}
	diff := math.Abs(c - l)
	return diff <= d.abs || diff <= d.frac*math.Abs(l)
}
