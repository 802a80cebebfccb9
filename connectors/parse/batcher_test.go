package parse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// stubSource gives the rig a source whose batches the test makes itself.
type stubSource struct{}

func (stubSource) Validate() error                              { return nil }
func (stubSource) Start(context.Context, *connectors.Env) error { return nil }
func (stubSource) Stop(context.Context) error                   { return nil }
func (stubSource) Outputs() []string                            { return []string{connectors.DefaultOutput} }

var _ connectors.Source = stubSource{}

var errRefused = errors.New("injected: reservation refused")

// flakySeq refuses the reservations numbered in fail (from 1), the way a
// lost lease refuses them: Emit then fails without publishing.
type flakySeq struct {
	mu    sync.Mutex
	calls int
	next  uint64
	fail  func(call int) bool
}

func (s *flakySeq) Reserve(n int) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail(s.calls) {
		return 0, errRefused
	}
	first := s.next
	s.next += uint64(n)
	return first, nil
}

func (s *flakySeq) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func newBatcherRig(t *testing.T, fail func(int) bool) (*conntest.Runner, *Batcher, *flakySeq) {
	t.Helper()
	seq := &flakySeq{fail: fail}
	r := conntest.NewRunner(t, stubSource{}, connectors.EnvConfig{Seq: seq})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := r.Stop(ctx); err != nil {
			t.Error(err)
		}
	})
	return r, NewBatcher(r.Env, 10), seq
}

// add hands records with the values from..to-1 to b.
func add(t *testing.T, b *Batcher, from, to int) {
	t.Helper()
	for v := from; v < to; v++ {
		if err := b.Add(func(dst *bus.Batch) error {
			dst.Records = append(dst.Records, bus.Record{Tag: "v", Value: bus.Long(int64(v)), Quality: bus.Good})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// collector reads what the rig's bus carries as it comes: the memory bus
// holds a publish until its subscriber acknowledges it.
type collector struct {
	mu   sync.Mutex
	vals []int64
	more chan struct{}
	bad  string
}

func newCollector(t *testing.T, r *conntest.Runner) *collector {
	c := &collector{more: make(chan struct{}, 1)}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		var dec bus.Decoder
		for {
			select {
			case <-stop:
				return
			case m, ok := <-r.Msgs:
				if !ok {
					return
				}
				var b bus.Batch
				err := dec.DecodeMessage(m, &b)
				m.Ack()
				c.mu.Lock()
				switch {
				case err != nil:
					c.bad = err.Error()
				case len(b.Records) > 10:
					c.bad = fmt.Sprintf("batch of %d records, batch size is 10", len(b.Records))
				}
				for _, rec := range b.Records {
					c.vals = append(c.vals, rec.Value.Long())
				}
				c.mu.Unlock()
				select {
				case c.more <- struct{}{}:
				default:
				}
			}
		}
	}()
	return c
}

// wait returns what was received once it holds n records.
func (c *collector) wait(t *testing.T, n int) []int64 {
	t.Helper()
	tm := time.NewTimer(10 * time.Second)
	defer tm.Stop()
	for {
		c.mu.Lock()
		got, bad := append([]int64(nil), c.vals...), c.bad
		c.mu.Unlock()
		if bad != "" {
			t.Fatal(bad)
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-tm.C:
			t.Fatalf("%d records within 10s, want %d: %v", len(got), n, got)
		}
	}
}

// inOrderOnce checks that got is 0..n-1, each once, in order.
func inOrderOnce(t *testing.T, got []int64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d records, want %d: %v", len(got), n, got)
	}
	for i, v := range got {
		if v != int64(i) {
			t.Fatalf("record %d has value %d: lost, repeated or reordered: %v", i, v, got)
		}
	}
}

// TestBatcherRestartKeepsFailedBatch runs Run again after each error, as
// Env.Go does: the first chunk goes out, the second fails three times, and
// nothing is lost or repeated; the final flush happens once, on Close.
func TestBatcherRestartKeepsFailedBatch(t *testing.T) {
	r, b, _ := newBatcherRig(t, func(call int) bool { return call >= 2 && call <= 4 })
	col := newCollector(t, r)
	add(t, b, 0, 35)
	ctx := t.Context()
	for i := range 3 {
		err := b.Run(ctx, time.Hour) // the first flush is at once
		if !errors.Is(err, errRefused) {
			t.Fatalf("run %d: %v, want the emit error", i, err)
		}
		if !strings.Contains(err.Error(), "25 records kept") {
			t.Errorf("run %d: %v does not say what was kept", i, err)
		}
	}
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx, time.Hour) }()
	inOrderOnce(t, col.wait(t, 35), 35)
	add(t, b, 35, 47) // pending when Close asks for the final flush
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		t.Fatal(err)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run after Close: %v", err)
	}
	inOrderOnce(t, col.wait(t, 47), 47)
	select {
	case <-b.Done():
	default:
		t.Fatal("Done not closed after the final flush")
	}
	if err := b.Run(ctx, time.Millisecond); err != nil { // Env.Go may still call it
		t.Fatalf("Run after the final flush: %v", err)
	}
	if err := b.Add(func(dst *bus.Batch) error {
		dst.Records = append(dst.Records, bus.Record{Tag: "late"})
		return nil
	}); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after the final flush: %v, want ErrClosed", err)
	}
	if got := col.wait(t, 47); len(got) != 47 {
		t.Errorf("%d records after the final flush, want 47", len(got))
	}
}

// TestBatcherUnderEnvGo lets the Env supervise Run while its emits fail N
// times, with Close called while the Env may be waiting out its back-off:
// no panic, nothing lost or repeated, and Close returns after the final
// flush.
func TestBatcherUnderEnvGo(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(map[int]string{1: "fails once", 3: "fails three times"}[n], func(t *testing.T) {
			r, b, seq := newBatcherRig(t, func(call int) bool { return call <= n })
			col := newCollector(t, r)
			r.Env.Go("flush", func(ctx context.Context) error { return b.Run(ctx, 5*time.Millisecond) })
			add(t, b, 0, 30)
			// Wait for the failures, then stop: Close either wakes the
			// running Run or makes the flush itself between restarts.
			waitfor.Until(t, 10*time.Second, func() bool { return seq.Calls() >= n },
				func() string { return fmt.Sprintf("%d emit attempts, want %d", seq.Calls(), n) })
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if err := b.Close(ctx); err != nil {
				t.Fatal(err)
			}
			inOrderOnce(t, col.wait(t, 30), 30)
			if e := r.Env.State().Snapshot().LastError; strings.Contains(e, "panic") || strings.Contains(e, "dropped") {
				t.Errorf("last error %q", e)
			}
		})
	}
}

// TestBatcherDropsCountedAtShutdown: records whose final flush fails while
// the Env shuts down (Env.Go will not run Run again) are counted, not lost
// silently, and Done closes.
func TestBatcherDropsCountedAtShutdown(t *testing.T) {
	r, b, _ := newBatcherRig(t, func(int) bool { return true })
	r.Env.Go("flush", func(ctx context.Context) error { return b.Run(ctx, 5*time.Millisecond) })
	add(t, b, 0, 7)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after the Env shut down")
	}
	if e := r.Env.State().Snapshot().LastError; !strings.Contains(e, "7 records dropped") {
		t.Errorf("last error %q does not count the 7 dropped records", e)
	}
}
