package parse

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// Batcher gathers the records of many small payloads (one MQTT message, one
// line, one webhook call each) into batches on the bus: a shim writing one
// reading at a time must not become one bus message per reading. When the
// bus is slower than the feed, Add blocks once four batches are waiting,
// which pushes back on the feed instead of growing memory.
type Batcher struct {
	env       *connectors.Env
	size      int
	parseErrs prometheus.Counter

	mu      sync.Mutex
	pending bus.Batch
	space   *sync.Cond
	full    chan struct{}
	done    chan struct{} // closed when Run has returned
}

// NewBatcher makes a Batcher emitting through env in batches of up to size.
func NewBatcher(env *connectors.Env, size int) *Batcher {
	b := &Batcher{env: env, size: max(size, 1), full: make(chan struct{}, 1), done: make(chan struct{})}
	b.space = sync.NewCond(&b.mu)
	b.parseErrs = connectors.Collector(env.Metrics.Reg, ErrorsMetric()).WithLabelValues(env.Name)
	return b
}

// Add runs fill (which appends parsed records to dst) under the batcher's
// lock. A fill error is a payload that did not parse: it is counted in
// ferry_parse_errors_total, logged once per burst and returned; fill must
// leave dst as it was then (the parsers do).
func (b *Batcher) Add(fill func(dst *bus.Batch) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.pending.Records) >= 4*b.size && b.env.Context().Err() == nil {
		b.space.Wait()
	}
	err := fill(&b.pending)
	if err != nil {
		b.parseErrs.Inc()
		b.env.Error(err)
	}
	if len(b.pending.Records) >= b.size {
		select {
		case b.full <- struct{}{}:
		default:
		}
	}
	return err
}

// Done is closed once Run has returned, after its final flush: a Stop waits
// on it so that nothing received is left behind.
func (b *Batcher) Done() <-chan struct{} { return b.done }

// Run emits what has gathered every interval, or sooner when a batch is
// full, until ctx ends (what is pending then is emitted first).
func (b *Batcher) Run(ctx context.Context, interval time.Duration) error {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	var out bus.Batch
	for {
		stopping := false
		select {
		case <-ctx.Done():
			stopping = true
		case <-t.C:
		case <-b.full:
		}
		b.mu.Lock()
		out.Records, b.pending.Records = b.pending.Records, out.Records[:0]
		b.space.Broadcast()
		b.mu.Unlock()
		for i := 0; i < len(out.Records); i += b.size {
			chunk := bus.Batch{Records: out.Records[i:min(i+b.size, len(out.Records))]}
			if err := b.env.Emit(context.WithoutCancel(ctx), &chunk); err != nil {
				return err
			}
		}
		clear(out.Records) // drop references to strings and attrs
		out.Records = out.Records[:0]
		if stopping {
			return nil
		}
	}
}
