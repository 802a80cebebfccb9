package transform

import "github.com/ferry-gateway/ferry/bus"

// SetUnit overwrites the record's unit, typically next to Scale when the
// scaling converts between units.
func SetUnit(u string) Middleware {
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			r.Unit = u
			return next(r)
		}
	}
}
