package outlet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
)

// Run hands q's batches to s until ctx ends (a reload swapping the runner, a
// stop) or q closes. A batch is acknowledged (and, from a spool, released)
// only after the sink took it; failures are retried with back-off, woken
// early the moment the sink reports its link up again, so a slow or broken
// sink holds its own queue back and nothing else. A sink that can pipeline
// gets up to window batches in flight, sent and acknowledged in order.
// A batch in hand when ctx ends goes back to the head of q.
func Run(ctx context.Context, s connectors.Sink, env *connectors.Env, q Queue, window int) {
	w := &watchdog{}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.run(wctx, env)
	if la, ok := q.(interface {
		watchLink(context.Context, *connectors.Env)
	}); ok {
		go la.watchLink(wctx, env)
	}
	if p, ok := s.(connectors.Pipeliner); ok && window > 1 {
		runPipelined(ctx, w, p, env, q, window)
		return
	}
	for {
		d, ok := next(ctx, env, q)
		if !ok {
			return
		}
		if !writeWithRetry(ctx, w, s, env, d) {
			return
		}
	}
}

// next receives the next batch for a sink, counting it in. A batch that
// does not decode is counted as an error and skipped: it would not decode
// on a retry either.
func next(ctx context.Context, env *connectors.Env, q Queue) (*Delivery, bool) {
	for {
		d, err := q.Next(ctx)
		if errors.Is(err, ErrUndecodable) {
			env.Error(err)
			continue
		}
		if err != nil {
			return nil, false
		}
		env.CountIn(len(d.Batch.Records))
		return d, true
	}
}

type inflight struct {
	d    *Delivery
	wait func(context.Context) error
}

// runPipelined sends batches as they come and waits for their
// acknowledgements in order in a second goroutine. When a send or an
// acknowledgement fails, sending pauses: the batches still outstanding (sent
// on the broken link) are resolved in order, the failed ones written again,
// and only then does sending go on — so a reconnect never lets newer batches
// overtake older ones. Duplicates remain possible (a batch whose PUBACK was
// lost is sent again): consumers de-duplicate on source and seq.
func runPipelined(ctx context.Context, w *watchdog, p connectors.Pipeliner, env *connectors.Env, q Queue, window int) {
	fl := make(chan inflight, window)
	done := make(chan struct{})
	var g gate
	g.c = sync.NewCond(&g.mu)
	go func() {
		defer close(done)
		for f := range fl {
			if err := f.wait(ctx); err != nil {
				if ctx.Err() != nil {
					f.d.Nack()
					g.settle(len(fl))
					continue
				}
				if errors.Is(err, connectors.ErrPoison) {
					env.Error(err)
					f.d.Ack()
					g.settle(len(fl))
					continue
				}
				g.pause()
				if !errors.Is(err, connectors.ErrNotConnected) {
					// Not connected yet is the link's to report (its
					// connect loop does); anything else is this batch's.
					env.Retry()
					env.Down(err)
				}
				writeWithRetry(ctx, w, p, env, f.d)
				g.settle(len(fl))
				continue
			}
			delivered(env, f.d)
			g.settle(len(fl))
		}
	}()
	defer func() { g.open(); close(fl); <-done }()
	for {
		d, ok := next(ctx, env, q)
		if !ok {
			return
		}
		if !g.waitOpen(ctx) {
			d.Nack()
			return
		}
		wait, err := p.Send(ctx, d.Batch)
		if err != nil {
			g.pause()
			failed := err
			wait = func(context.Context) error { return failed }
		}
		select {
		case fl <- inflight{d, wait}:
		case <-ctx.Done():
			d.Nack()
			return
		}
	}
}

// gate pauses the sender of a pipelined sink while a failure is resolved.
type gate struct {
	mu     sync.Mutex
	c      *sync.Cond
	paused bool
}

func (g *gate) pause() {
	g.mu.Lock()
	g.paused = true
	g.mu.Unlock()
}

// settle reopens the gate once nothing sent before the failure is left.
func (g *gate) settle(queued int) {
	g.mu.Lock()
	if g.paused && queued == 0 {
		g.paused = false
		g.c.Broadcast()
	}
	g.mu.Unlock()
}

func (g *gate) open() {
	g.mu.Lock()
	g.paused = false
	g.c.Broadcast()
	g.mu.Unlock()
}

// waitOpen blocks while the gate is paused; false when ctx ended.
func (g *gate) waitOpen(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, g.open)
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && ctx.Err() == nil {
		g.c.Wait()
	}
	return ctx.Err() == nil
}

// delivered counts a batch the far side took, marks a sink that was down up
// again, and acknowledges the batch (releasing it from its queue).
func delivered(env *connectors.Env, d *Delivery) {
	n := len(d.Batch.Records)
	env.CountOut(n)
	env.Sent(n)
	switch env.State().Phase() {
	case connectors.PhaseDown, connectors.PhaseRetrying:
		env.Up()
	}
	d.Ack()
}

// RetryBackoff spaces the retries of a failed write. Capped at 5 s: a
// link that comes back wakes the retry at once anyway, and a far side that
// refused (an HTTP 503) is asked again soon after it recovers.
var RetryBackoff = connectors.Backoff{Max: 5 * time.Second}

// StuckAfter is how long a Write may run before the sink is reported down
// as stuck: a driver blocked in a call that ignores its context looks up
// and idle otherwise, while its outlet fills.
var StuckAfter = 30 * time.Second

// watchdog reports a sink down when one of its writes has not returned
// after StuckAfter. One goroutine per runner, not one per write: the hot
// path pays two atomic stores.
type watchdog struct {
	started atomic.Int64 // Unix ns the running write began; 0 when none
	records atomic.Int64
}

func (w *watchdog) run(ctx context.Context, env *connectors.Env) {
	t := time.NewTicker(StuckAfter / 4)
	defer t.Stop()
	reported := int64(0) // the write already reported
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := w.started.Load()
		if s == 0 || s == reported || time.Since(time.Unix(0, s)) < StuckAfter {
			continue
		}
		reported = s
		env.Down(fmt.Errorf("%w: a write of %d records has not returned after %s", ErrStuck, w.records.Load(), time.Since(time.Unix(0, s)).Round(time.Second)))
	}
}

// write calls s.Write under the watchdog. A write that finally returns
// takes it from there (delivered marks the sink up again).
func (w *watchdog) write(ctx context.Context, s connectors.Sink, d *Delivery) error {
	w.records.Store(int64(len(d.Batch.Records)))
	w.started.Store(time.Now().UnixNano())
	defer w.started.Store(0)
	return s.Write(ctx, d.Batch)
}

// ErrStuck marks a sink whose Write does not return.
var ErrStuck = errors.New("sink stuck")

// writeWithRetry writes d until it is taken, poisoned, or ctx ends (then it
// gives d back and reports false). A back-off ends early when the sink
// reports its link up: draining starts the moment the link is back.
func writeWithRetry(ctx context.Context, w *watchdog, s connectors.Sink, env *connectors.Env, d *Delivery) bool {
	bo := RetryBackoff
	for {
		woken := env.Woken()
		err := w.write(ctx, s, d)
		if err == nil {
			delivered(env, d)
			return true
		}
		if errors.Is(err, connectors.ErrPoison) {
			env.Error(err)
			d.Ack()
			return true
		}
		env.Retry()
		env.Down(err)
		t := time.NewTimer(bo.Next())
		select {
		case <-t.C:
		case <-woken:
			t.Stop()
			bo.Reset()
		case <-ctx.Done():
			t.Stop()
			d.Nack()
			return false
		}
	}
}
