package transform

import "github.com/ferry-gateway/ferry/bus"

// Filter drops the records for which keep returns false. It lets a route's
// compiled where expression (router/where.Predicate) sit in the same chain as
// the transforms, ahead of the stateful ones so that they only track records
// the route actually carries.
func Filter(keep func(r *bus.Record) bool) Middleware {
	return func(next Next) Next {
		return func(r *bus.Record) bool {
			return keep(r) && next(r)
		}
	}
}
