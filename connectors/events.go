package connectors

import (
	"sync"
	"time"
)

// Event is one thing that happened to the gateway worth telling an operator:
// a module changing state, an error (rate-limited as the log is), records
// dropped, a reload. /api/events serves the last few hundred.
type Event struct {
	ID     uint64    `json:"id"` // increasing; a client asks for what came after the last it saw
	Time   time.Time `json:"time"`
	Module string    `json:"module,omitempty"`
	Kind   string    `json:"kind"` // one of the Event* kinds
	From   Phase     `json:"from,omitempty"`
	To     Phase     `json:"to,omitempty"`
	// Message says what happened in a few words; Error is the full text of
	// the cause, when there is one.
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
	// Count is how many records a drop lost, or how many repeats of an
	// error were suppressed before this one.
	Count int64 `json:"count,omitempty"`
}

// Event kinds.
const (
	EventState  = "state"
	EventError  = "error"
	EventDrop   = "drop"
	EventReload = "reload"
	// EventCommand is a write-back command taken in and its result.
	EventCommand = "command"
)

// Event records ev as one of this module's events (the module is filled
// in), for what is neither a state change nor an error: a command and its
// result.
func (e *Env) Event(ev Event) {
	ev.Module = e.Name
	e.events.Add(ev)
}

// Events is a ring of the most recent events, shared by every module of a
// pipeline. Adding never blocks on a reader.
type Events struct {
	mu   sync.Mutex
	ring []Event
	next uint64 // id of the next event
	subs map[chan struct{}]struct{}
}

// DefaultEvents is how many events a pipeline keeps.
const DefaultEvents = 512

// NewEvents returns a ring of n events (DefaultEvents when n <= 0).
func NewEvents(n int) *Events {
	if n <= 0 {
		n = DefaultEvents
	}
	return &Events{ring: make([]Event, 0, n), next: 1}
}

// Add records ev, stamping its id and (when unset) its time.
func (e *Events) Add(ev Event) {
	if e == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	e.mu.Lock()
	ev.ID = e.next
	e.next++
	if len(e.ring) < cap(e.ring) {
		e.ring = append(e.ring, ev)
	} else {
		e.ring[int(ev.ID-1)%cap(e.ring)] = ev
	}
	for c := range e.subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	e.mu.Unlock()
}

// Since returns the events with an id above after, oldest first.
func (e *Events) Since(after uint64) []Event {
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Event, 0, len(e.ring))
	n := uint64(len(e.ring))
	first := e.next - n // id of the oldest kept
	for id := max(first, after+1); id < e.next; id++ {
		out = append(out, e.ring[int(id-1)%cap(e.ring)])
	}
	return out
}

// Notify returns a channel that receives (without blocking the adder) after
// each Add, and a func that stops it.
func (e *Events) Notify() (<-chan struct{}, func()) {
	c := make(chan struct{}, 1)
	e.mu.Lock()
	if e.subs == nil {
		e.subs = map[chan struct{}]struct{}{}
	}
	e.subs[c] = struct{}{}
	e.mu.Unlock()
	return c, func() {
		e.mu.Lock()
		delete(e.subs, c)
		e.mu.Unlock()
	}
}
