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
	PhaseFailed     Phase = "failed" // Start returned an error; it will not run
	PhaseStopped    Phase = "stopped"
	// PhaseStandby: another instance on the shared bus owns this source;
	// this one waits to take over.
	PhaseStandby Phase = "standby"
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

	In, Out, Errors atomic.Uint64
	onPhase         func(Phase)
}

// Snapshot is a copy of State for reporting.
type Snapshot struct {
	Phase     Phase     `json:"state"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
	LastErrAt time.Time `json:"last_error_at,omitzero"`
	In        uint64    `json:"records_in"`
	Out       uint64    `json:"records_out"`
	Errors    uint64    `json:"errors"`
}

func newState(onPhase func(Phase)) *State {
	s := &State{onPhase: onPhase}
	s.Set(PhaseStarting)
	return s
}

// Set moves to phase p, keeping the time it entered it.
func (s *State) Set(p Phase) {
	s.mu.Lock()
	changed := s.phase != p
	if changed {
		s.phase, s.since = p, time.Now()
	}
	s.mu.Unlock()
	if changed && s.onPhase != nil {
		s.onPhase(p)
	}
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
		In: s.In.Load(), Out: s.Out.Load(), Errors: s.Errors.Load(),
	}
}
