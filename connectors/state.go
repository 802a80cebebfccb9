package connectors

import (
	"sync"
	"sync/atomic"
	"time"
)

// Phase is where a connector is in its life.
type Phase string

const (
	PhaseStarting   Phase = "starting"
	PhaseConnecting Phase = "connecting" // started, first connection not made yet
	PhaseUp         Phase = "up"
	PhaseDown       Phase = "down"
	// PhaseRetrying: Start failed, or its goroutines keep failing; the
	// supervisor tries again at NextTry (back-off about 1 s doubling to
	// 1 min). LastError keeps the cause.
	PhaseRetrying Phase = "retrying"
	// PhaseFailed: it cannot run and will not be tried again.
	PhaseFailed  Phase = "failed"
	PhaseStopped Phase = "stopped"
	// PhaseStandby: another instance on the shared bus owns this source;
	// this one waits to take over.
	PhaseStandby Phase = "standby"
	// PhaseBlocked: a source that may not emit for now, and waits: its
	// sequence numbers cannot be made durable (a full disk), or a sink's
	// queue it feeds refuses batches. LastError says why.
	PhaseBlocked Phase = "blocked"
)

// State is a connector's live status, shared with the status page and the
// metrics. Counters are atomics because emitting goroutines update them on
// every batch.
type State struct {
	mu        sync.Mutex
	phase     Phase
	since     time.Time
	lastErr   string
	lastErrAt time.Time
	attempt   int
	nextTry   time.Time

	In, Out, Errors atomic.Uint64
	onPhase         func(Phase)
}

// Snapshot is a copy of State for reporting.
type Snapshot struct {
	Phase     Phase     `json:"state"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	LastErrAt time.Time `json:"last_error_at,omitzero"`
	// Attempt and NextTry are set while retrying: how many tries failed in
	// a row, and when the next one is due.
	Attempt int       `json:"attempt,omitempty"`
	NextTry time.Time `json:"next_try,omitzero"`
	In      uint64    `json:"records_in"`
	Out     uint64    `json:"records_out"`
	Errors  uint64    `json:"errors"`
}

func newState(onPhase func(Phase)) *State {
	s := &State{onPhase: onPhase}
	s.Set(PhaseStarting)
	return s
}

// Set moves to phase p, keeping the time it entered it.
func (s *State) Set(p Phase) { s.set(p) }

// set moves to phase p and reports the phase before and when it was
// entered; changed is false when p is the phase already.
func (s *State) set(p Phase) (prev Phase, since time.Time, changed bool) {
	s.mu.Lock()
	prev, since = s.phase, s.since
	changed = s.phase != p
	if changed {
		s.phase, s.since = p, time.Now()
		if p != PhaseRetrying {
			s.attempt, s.nextTry = 0, time.Time{}
		}
	}
	s.mu.Unlock()
	if changed && s.onPhase != nil {
		s.onPhase(p)
	}
	return prev, since, changed
}

func (s *State) setRetry(attempt int, next time.Time) {
	s.mu.Lock()
	s.attempt, s.nextTry = attempt, next
	s.mu.Unlock()
}

// Phase returns the current phase.
func (s *State) Phase() Phase {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase
}

func (s *State) setErr(err error) {
	s.mu.Lock()
	s.lastErr, s.lastErrAt = err.Error(), time.Now()
	s.mu.Unlock()
}

// Snapshot copies the state.
func (s *State) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Snapshot{
		Phase: s.phase, Since: s.since, LastError: s.lastErr, LastErrAt: s.lastErrAt,
		Attempt: s.attempt, NextTry: s.nextTry,
		In: s.In.Load(), Out: s.Out.Load(), Errors: s.Errors.Load(),
	}
}
