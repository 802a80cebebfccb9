package transform

import "github.com/ferry-gateway/ferry/bus"

// Scale maps a numeric value v to v*factor+offset. The result is always a
// double, also for long and boolean inputs, because a scaled reading is a
// measurement, not a count. Values that are not numeric pass unchanged, so a
// route may scale a device's analog tags without excluding its strings.
func Scale(factor, offset float64) Middleware {
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			if v, ok := r.Value.Float(); ok {
				r.Value = bus.Double(v*factor + offset)
			}
			return next(r)
		}
	}
}
