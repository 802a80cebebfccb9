package admin

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router"
)

// History is what /api/history answers: the pipeline's counters sampled
// once a second, oldest first, so that a page loaded now can draw the last
// minutes. Counters are cumulative; a reader takes differences for rates.
type History struct {
	IntervalSeconds float64 `json:"interval_seconds"`
	// Modules names the columns of In and Out, Spools those of Spool.
	Modules []string `json:"modules"`
	Spools  []string `json:"spools"`
	Samples []Sample `json:"samples"`
}

// Sample is one reading of every module's counters.
type Sample struct {
	T     int64    `json:"t"`     // Unix milliseconds
	In    []uint64 `json:"in"`    // records_in per module
	Out   []uint64 `json:"out"`   // records_out per module
	Spool []int64  `json:"spool"` // records waiting per spool
}

// history is a ring of samples. When the set of modules or spools changes
// (a reload), it starts over, since old columns would no longer line up.
type history struct {
	mu      sync.Mutex
	every   time.Duration
	modules []string
	spools  []string
	ring    []Sample
	next    int
	full    bool
}

func newHistory(size int, every time.Duration) *history {
	return &history{ring: make([]Sample, size), every: every}
}

func (h *history) add(at time.Time, st router.Status) {
	var mods, spools []string
	s := Sample{T: at.UnixMilli()}
	for _, m := range st.Modules {
		mods = append(mods, m.Name)
		s.In = append(s.In, m.In)
		s.Out = append(s.Out, m.Out)
		if m.Spool != nil {
			spools = append(spools, m.Name)
			s.Spool = append(s.Spool, m.Spool.Records)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(mods, h.modules) || !slices.Equal(spools, h.spools) {
		h.modules, h.spools = mods, spools
		clear(h.ring)
		h.next, h.full = 0, false
	}
	h.ring[h.next] = s
	h.next = (h.next + 1) % len(h.ring)
	if h.next == 0 {
		h.full = true
	}
}

func (h *history) snapshot() History {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := History{
		IntervalSeconds: h.every.Seconds(),
		Modules:         nonNil(h.modules), Spools: nonNil(h.spools),
		Samples: []Sample{},
	}
	if h.full {
		out.Samples = append(out.Samples, h.ring[h.next:]...)
	}
	out.Samples = append(out.Samples, h.ring[:h.next]...)
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sample records the pipeline's counters every interval until ctx ends or
// every module has stopped.
//
// It takes no sample before the pipeline has started: Status reads the
// start time, which Start writes without a lock, and a module that has left
// "starting" proves (through its state's lock) that the write happened.
func (a *Admin) sample(ctx context.Context, every time.Duration) {
	defer close(a.done)
	t := time.NewTicker(every)
	defer t.Stop()
	started := false
	for {
		if !started {
			started = a.pipelineStarted()
		}
		if started {
			st := a.p.Status()
			if allStopped(st) {
				return
			}
			a.hist.add(time.Now(), st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// pipelineStarted reports whether Start has begun starting modules: one of
// them is no longer starting, failed, stopped, or retrying before its first
// start. A pipeline none of whose modules has started yet (every one
// retrying, say), or that stopped before the sampler saw it run, is not
// sampled; its sampler keeps checking until Close.
func (a *Admin) pipelineStarted() bool {
	_, waiting := a.p.Ready()
	return len(waiting) < len(a.p.Config().Modules)
}

func allStopped(st router.Status) bool {
	for _, m := range st.Modules {
		if m.Phase != connectors.PhaseStopped {
			return false
		}
	}
	return len(st.Modules) > 0
}
