// Package conntest is the conformance suite every connector runs against its
// simulator, in the spirit of watermill's pubsub/tests: one shared suite,
// not a near-copy per connector that drifts apart.
package conntest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// Features says which checks apply to a connector.
type Features struct {
	Source bool // it emits batches: first batch, monotonic sequence numbers
	Sink   bool // it accepts batches through Write
	// FirstBatch bounds the wait for the first batch (default 10s). It is a
	// deadline for a liveness check, not a speed measurement.
	FirstBatch time.Duration
}

// Harness connects the suite to a connector and its simulator.
type Harness struct {
	// New returns a decoded, defaulted and validated connector that talks to
	// a simulator the harness started (use t.Cleanup to stop it).
	New func(t *testing.T) connectors.Connector
	// FailStart, when set, returns a connector whose Start fails (a port in
	// use, a path that cannot be created).
	FailStart func(t *testing.T) connectors.Connector
	// Restart, when set, stops the simulator and starts it again on the same
	// address; the connector must reconnect by itself.
	Restart func(t *testing.T)
	// Malformed, when set, makes the simulator answer the next request(s)
	// with something malformed; the connector must survive it.
	Malformed func(t *testing.T)
	// Delivered, for sinks, reports whether records with the given sequence
	// numbers (source "conntest") reached the far side.
	Delivered func(t *testing.T, seqs []uint64) bool
}

// Run runs the suite.
func Run(t *testing.T, f Features, h Harness) {
	if f.FirstBatch == 0 {
		f.FirstBatch = 10 * time.Second
	}
	t.Run("StartStop", func(t *testing.T) {
		c := h.New(t)
		rig := newRig(t, c)
		rig.start(t)
		rig.stop(t)
	})
	t.Run("StopAfterFailedStart", func(t *testing.T) {
		if h.FailStart == nil {
			t.Skip("harness has no way to make Start fail")
		}
		c := h.FailStart(t)
		rig := newRig(t, c)
		if err := c.Start(t.Context(), rig.Env); err == nil {
			t.Fatal("Start succeeded; the harness promised a failing start")
		}
		rig.stop(t)
	})
	if f.Source {
		t.Run("FirstBatch", func(t *testing.T) {
			rig := newRig(t, h.New(t))
			rig.start(t)
			defer rig.stop(t)
			b := rig.next(t, f.FirstBatch)
			for i, r := range b.Records {
				if r.Source != rig.Env.Name || r.Tag == "" || r.SourceTime == 0 || r.IngestTime == 0 {
					t.Fatalf("record %d lacks source, tag or timestamps: %+v", i, r)
				}
			}
		})
		t.Run("MonotonicSeq", func(t *testing.T) {
			rig := newRig(t, h.New(t))
			rig.start(t)
			defer rig.stop(t)
			var last uint64
			seen := false
			for range 3 {
				for _, r := range rig.next(t, f.FirstBatch).Records {
					if seen && r.Seq <= last {
						t.Fatalf("seq %d after %d: sequence numbers must increase", r.Seq, last)
					}
					last, seen = r.Seq, true
				}
			}
		})
		if h.Malformed != nil {
			t.Run("SurvivesMalformed", func(t *testing.T) {
				rig := newRig(t, h.New(t))
				rig.start(t)
				defer rig.stop(t)
				rig.next(t, f.FirstBatch)
				h.Malformed(t)
				// Data must flow again afterwards, from the same connector.
				rig.drainUntilGood(t, f.FirstBatch, time.Now())
			})
		}
		if h.Restart != nil {
			t.Run("ReconnectAfterRestart", func(t *testing.T) {
				rig := newRig(t, h.New(t))
				rig.start(t)
				defer rig.stop(t)
				rig.next(t, f.FirstBatch)
				h.Restart(t)
				rig.drainUntilGood(t, f.FirstBatch, time.Now())
			})
		}
	}
	if f.Sink {
		t.Run("WriteDelivers", func(t *testing.T) {
			if h.Delivered == nil {
				t.Skip("harness cannot observe the far side")
			}
			c := h.New(t)
			rig := newRig(t, c)
			rig.start(t)
			defer rig.stop(t)
			s, ok := c.(connectors.Sink)
			if !ok {
				t.Fatal("connector is not a connectors.Sink")
			}
			b := sampleBatch(10)
			ctx, cancel := context.WithTimeout(t.Context(), f.FirstBatch)
			defer cancel()
			if err := s.Write(ctx, &b); err != nil {
				t.Fatalf("Write: %v", err)
			}
			seqs := make([]uint64, len(b.Records))
			for i, r := range b.Records {
				seqs[i] = r.Seq
			}
			if !h.Delivered(t, seqs) {
				t.Fatal("written records did not reach the far side")
			}
		})
	}
}

// sampleBatch builds n records from source "conntest" with consecutive seqs.
func sampleBatch(n int) bus.Batch {
	var b bus.Batch
	now := time.Now().UnixNano()
	for i := range n {
		b.Records = append(b.Records, bus.Record{
			Source: "conntest", Device: "dev", Tag: "tag", Value: bus.Double(float64(i) + 0.5),
			Quality: bus.Good, SourceTime: now, IngestTime: now, Seq: uint64(1000 + i), Unit: "u",
		})
	}
	return b
}

// SampleBatch is the batch the sink checks write, for harnesses that want to
// check it themselves.
func SampleBatch(n int) bus.Batch { return sampleBatch(n) }

type rig struct {
	*Runner
	c connectors.Connector
}

func newRig(t *testing.T, c connectors.Connector) *rig {
	t.Helper()
	return &rig{Runner: NewRunner(t, c, connectors.EnvConfig{Type: "conntest"}), c: c}
}

func (r *rig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.c.Start(ctx, r.Env); err != nil {
		t.Fatalf("Start: %v", err)
	}
}

func (r *rig) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Error(err)
	}
}

func (r *rig) next(t *testing.T, within time.Duration) *bus.Batch {
	t.Helper()
	b := r.Next(t, within)
	if len(b.Records) == 0 {
		t.Fatal("empty batch emitted")
	}
	return b
}

// drainUntilGood reads batches until one holds a GOOD record ingested after
// since, proving data flows again after a fault (batches read before the
// fault do not count).
func (r *rig) drainUntilGood(t *testing.T, within time.Duration, since time.Time) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		b := r.next(t, time.Until(deadline))
		for _, rec := range b.Records {
			if rec.Quality == bus.Good && rec.IngestTime > since.UnixNano() {
				return
			}
		}
	}
	t.Fatal(errors.New("no GOOD record after the fault"))
}
