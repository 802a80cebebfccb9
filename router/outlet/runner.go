package outlet

import (
	"context"
	"errors"
	"sync"
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
	if p, ok := s.(connectors.Pipeliner); ok && window > 1 {
		runPipelined(ctx, p, env, q, window)
		return
	}
	for {
		d, ok := next(ctx, env, q)
		if !ok {
			return
		}
		if !writeWithRetry(ctx, s, env, d) {
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
func runPipelined(ctx context.Context, p connectors.Pipeliner, env *connectors.Env, q Queue, window int) {
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
				writeWithRetry(ctx, p, env, f.d)
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

// RetryBackoff spaces the retries of a failed write. Capped at 10 s: a
// link that comes back wakes the retry at once anyway.
var RetryBackoff = connectors.Backoff{Max: 10 * time.Second}

// writeWithRetry writes d until it is taken, poisoned, or ctx ends (then it
// gives d back and reports false). A back-off ends early when the sink
// reports its link up: draining starts the moment the link is back.
func writeWithRetry(ctx context.Context, s connectors.Sink, env *connectors.Env, d *Delivery) bool {
	bo := RetryBackoff
	for {
		woken := env.Woken()
		err := s.Write(ctx, d.Batch)
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
