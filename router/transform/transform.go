// Package transform holds the per-record transforms a route applies between
// its where filter and its sinks: scale, deadband, rate limit, rename and unit.
//
// Each transform is a Middleware that wraps the next step of the route, in
// the manner of watermill's handler middleware, so a route compiles once into
// a single Next and the engine calls it per record without looking anything up.
//
// Transforms change the record in place. The engine therefore hands each route
// its own copy of a record; a Record's Attrs map is shared between copies and
// no transform here writes to it.
//
// Concurrency: the engine calls a route's chain from a single goroutine. The
// stateful transforms (Deadband, MinInterval, Rename) rely on that and take no
// locks. The state lives in the Middleware value a constructor returns, so a
// route compiled once keeps one state however many times the engine wraps it;
// two routes that must not share state call the constructor twice.
package transform

import (
	"strings"

	"github.com/ferry-gateway/ferry/bus"
)

// Next handles one record; it returns false when the record is held back
// (not passed on: counted as held_back on its route, never as loss).
type Next func(r *bus.Record) bool

// Middleware wraps the next step of a route.
type Middleware func(Next) Next

// Chain returns final wrapped by ms, so that ms[0] sees a record first and
// final sees it last. Nil middlewares are skipped, which lets a route compiler
// leave holes for transforms a route does not configure.
func Chain(final Next, ms ...Middleware) Next {
	next := final
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i] != nil {
			next = ms[i](next)
		}
	}
	return next
}

// MaxKeys bounds the per-series state of Deadband and MinInterval and the
// cache of Rename, each counted per Middleware value. A misconfigured route
// over a source that mints tag names (a counter in the path, a timestamp)
// would otherwise grow without limit on a box with little memory.
//
// Nothing is evicted: eviction would make a series flap between filtered and
// unfiltered as it falls in and out of the table. Instead a series first seen
// once the table is full is passed through unfiltered (Deadband, MinInterval)
// or renamed without caching (Rename). Failing open forwards more than asked
// but never loses a reading.
const MaxKeys = 1 << 16

// seriesKey identifies one time series. A struct of strings rather than a
// joined string, so a lookup builds nothing and cannot collide on separators.
type seriesKey struct {
	source, device, tag string
}

func keyOf(r *bus.Record) seriesKey {
	return seriesKey{r.Source, r.Device, r.Tag}
}

// clone copies the strings before they become map keys: record strings may
// point into a large decode buffer that the map would otherwise keep alive.
func (k seriesKey) clone() seriesKey {
	return seriesKey{strings.Clone(k.source), strings.Clone(k.device), strings.Clone(k.tag)}
}
