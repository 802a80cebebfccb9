package parse

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// ErrClosed is returned by Add once the batcher has made its final flush:
// the records are counted as dropped.
var ErrClosed = errors.New("batcher closed")

// Batcher gathers the records of many small payloads (one MQTT message, one
// line, one webhook call each) into batches on the bus: a shim writing one
// reading at a time must not become one bus message per reading. When the
// bus is slower than the feed, Add blocks once four batches are waiting,
// which pushes back on the feed instead of growing memory.
//
// Run is written for connectors.Env.Go, which runs it again after it
// returns an error or panics: records whose emit failed stay in the
// batcher and go out first on the next run, in order, so a restart neither
// loses nor repeats them. The final flush happens once, when Run's context
// ends or Close is called, whichever comes first.
type Batcher struct {
	env       *connectors.Env
	size      int
	parseErrs prometheus.Counter

	mu      sync.Mutex
	pending bus.Batch
	space   *sync.Cond
	closed  bool // the final flush has begun: Add refuses; guarded by mu
	full    chan struct{}

	stop     chan struct{} // closed by Close: the running Run flushes and ends
	stopOnce sync.Once
	done     chan struct{} // closed after the final flush
	// flushing holds a token while Run or Close owns out; Close takes it
	// to make the final flush itself when no Run is running (Env.Go may
	// be waiting out a back-off between runs).
	flushing chan struct{}
	out      bus.Batch // taken from pending, not yet all emitted
	sent     int       // records of out already emitted
}

// NewBatcher makes a Batcher emitting through env in batches of up to size.
func NewBatcher(env *connectors.Env, size int) *Batcher {
	b := &Batcher{
		env: env, size: max(size, 1),
		full: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		flushing: make(chan struct{}, 1),
	}
	b.space = sync.NewCond(&b.mu)
	b.parseErrs = connectors.Collector(env.Metrics.Reg, ErrorsMetric()).WithLabelValues(env.Name)
	// An Add waiting for space must not outlive the connector.
	context.AfterFunc(env.Context(), b.wake)
	context.AfterFunc(env.Context(), b.shutdownFlush)
	return b
}

func (b *Batcher) wake() {
	b.mu.Lock()
	b.space.Broadcast()
	b.mu.Unlock()
}

// Add runs fill (which appends parsed records to dst) under the batcher's
// lock. A fill error is a payload that did not parse: it is counted in
// ferry_parse_errors_total, logged once per burst and returned; fill must
// leave dst as it was then (the parsers do). Once the final flush has
// begun, Add drops what fill appended, counts it as an error and returns
// ErrClosed.
func (b *Batcher) Add(fill func(dst *bus.Batch) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending.Records) >= 4*b.size && !b.closed && b.env.Context().Err() == nil {
		b.space.Wait()
	}
	n := len(b.pending.Records)
	err := fill(&b.pending)
	if err != nil {
		b.parseErrs.Inc()
		b.env.Error(err)
	}
	if b.closed {
		late := len(b.pending.Records) - n
		clear(b.pending.Records[n:])
		b.pending.Records = b.pending.Records[:n]
		if late > 0 {
			b.env.Error(fmt.Errorf("%d records dropped: %w (they arrived during the final flush)", late, ErrClosed))
			return ErrClosed
		}
		return err
	}
	if len(b.pending.Records) >= b.size {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
	return err
}

// Pending returns how many records wait for the next flush (tests and
// status).
func (b *Batcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending.Records)
}

// Done is closed after the final flush: a Stop waits on it (or calls
// Close) so that nothing received is left behind.
func (b *Batcher) Done() <-chan struct{} { return b.done }

// Run emits what has gathered every interval, or sooner when a batch is
// full, until ctx ends or Close is called; what is pending then is emitted
// first. An emit error returns: the records that were not emitted are kept
// for the next Run. Run returns nil at once after the final flush.
func (b *Batcher) Run(ctx context.Context, interval time.Duration) error {
	select {
	case b.flushing <- struct{}{}:
	case <-b.done:
		return nil
	}
	defer func() { <-b.flushing }()
	t := time.NewTicker(interval)
	defer t.Stop()
	stopping := false
	for {
		select {
		case <-b.done: // Close made the final flush before this Run began
			return nil
		default:
		}
		if stopping {
			b.refuse()
		}
		// Records kept from a failed run go out at once, before new ones.
		if err := b.flush(context.WithoutCancel(ctx)); err != nil {
			if b.env.Context().Err() != nil {
				// The Env is shutting down and will not run us again.
				b.finish(err)
			}
			return err
		}
		if stopping {
			b.finish(nil)
			return nil
		}
		select {
		case <-ctx.Done():
			stopping = true
		case <-b.stop:
			stopping = true
		case <-t.C:
		case <-b.full:
		}
	}
}

// Close makes the final flush and waits for it, up to ctx's deadline: it
// asks a running Run to flush and end, or, when none is running (between
// restarts, or never started), flushes itself. What cannot be emitted then
// is counted as dropped.
func (b *Batcher) Close(ctx context.Context) error {
	b.stopOnce.Do(func() { close(b.stop) })
	select {
	case b.flushing <- struct{}{}:
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("final flush: %w", ctx.Err())
	}
	defer func() { <-b.flushing }()
	select {
	case <-b.done:
		return nil
	default:
	}
	b.refuse()
	// Emit failures are retried until ctx ends: Stop waits for the flush
	// for as long as it was given.
	bo := connectors.Backoff{Min: 20 * time.Millisecond, Max: time.Second}
	err := b.flush(ctx)
	for err != nil && connectors.Sleep(ctx, bo.Next()) == nil {
		err = b.flush(ctx)
	}
	b.finish(err)
	if err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	return nil
}

// shutdownFlush is the final flush when the Env's context ends before
// anyone called Close: Env.Go runs Run no more, and a Run between
// restarts would leave the records uncounted.
func (b *Batcher) shutdownFlush() {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = b.Close(ctx) // a failure is counted as dropped
}

// shutdownGrace bounds the final flush after the Env's context ended.
const shutdownGrace = 5 * time.Second

// refuse makes Add refuse new records, so that the final flush is final.
func (b *Batcher) refuse() {
	b.mu.Lock()
	b.closed = true
	b.space.Broadcast()
	b.mu.Unlock()
}

// flush emits out (what a failed run left), then what is pending. The
// caller holds the flushing token.
func (b *Batcher) flush(ctx context.Context) error {
	if err := b.emitOut(ctx); err != nil {
		return err
	}
	b.mu.Lock()
	b.out.Records, b.pending.Records = b.pending.Records, b.out.Records
	b.space.Broadcast()
	b.mu.Unlock()
	return b.emitOut(ctx)
}

// emitOut emits out in batches of size; an error leaves the rest in out.
func (b *Batcher) emitOut(ctx context.Context) error {
	for b.sent < len(b.out.Records) {
		end := min(b.sent+b.size, len(b.out.Records))
		chunk := bus.Batch{Records: b.out.Records[b.sent:end]}
		if err := b.env.Emit(ctx, &chunk); err != nil {
			return fmt.Errorf("emit (%d records kept for the next try): %w", len(b.out.Records)-b.sent, err)
		}
		b.sent = end
	}
	clear(b.out.Records) // drop references to strings and attrs
	b.out.Records, b.sent = b.out.Records[:0], 0
	return nil
}

// finish ends the batcher after its final flush. err is why the flush did
// not complete: what is left is then counted as dropped.
func (b *Batcher) finish(err error) {
	b.mu.Lock()
	lost := len(b.out.Records) - b.sent + len(b.pending.Records)
	clear(b.pending.Records)
	b.pending.Records = b.pending.Records[:0]
	b.closed = true
	b.space.Broadcast()
	b.mu.Unlock()
	clear(b.out.Records)
	b.out.Records, b.sent = b.out.Records[:0], 0
	if lost > 0 {
		if err == nil {
			err = ErrClosed
		}
		b.env.Error(fmt.Errorf("%d records dropped at stop: %w", lost, err))
	}
	b.stopOnce.Do(func() { close(b.stop) })
	close(b.done)
}
