package mqtt

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// inbox gathers the records of subscribed messages into batches: a shim
// publishing one reading per message must not become one bus message per
// reading. A full inbox blocks the MQTT client's delivery, which pushes back
// on the broker instead of growing memory.
type inbox struct {
	env       *connectors.Env
	subs      []Subscription
	parsers   []*parse.Parser
	batchSize int
	parseErrs prometheus.Counter

	mu      sync.Mutex
	pending bus.Batch
	space   *sync.Cond
	full    chan struct{} // a flush is due before the interval
}

func newInbox(env *connectors.Env, subs []Subscription, batchSize int) (*inbox, error) {
	in := &inbox{env: env, subs: subs, batchSize: batchSize, full: make(chan struct{}, 1)}
	in.space = sync.NewCond(&in.mu)
	for i, s := range subs {
		p, err := parse.New(s.Parse)
		if err != nil {
			return nil, fmt.Errorf("subscribe[%d]: %w", i, err)
		}
		in.parsers = append(in.parsers, p)
	}
	in.parseErrs = connectors.Collector(env.Metrics.Reg, parse.ErrorsMetric()).WithLabelValues(env.Name)
	return in, nil
}

// receive parses one message with the first subscription whose filter
// matches its topic.
func (in *inbox) receive(topic string, payload []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.pending.Records) >= 4*in.batchSize && in.env.Context().Err() == nil {
		in.space.Wait()
	}
	for i, s := range in.subs {
		if !matchFilter(s.Topic, topic) {
			continue
		}
		if err := in.parsers[i].Parse(payload, topic, &in.pending); err != nil {
			in.parseErrs.Inc()
			in.env.Error(fmt.Errorf("topic %s: %w", topic, err))
		}
		break
	}
	if len(in.pending.Records) >= in.batchSize {
		select {
		case in.full <- struct{}{}:
		default:
		}
	}
}

// run emits what has gathered every interval, or sooner when a batch is
// full.
func (in *inbox) run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var out bus.Batch
	for {
		select {
		case <-ctx.Done():
			in.mu.Lock()
			in.space.Broadcast()
			in.mu.Unlock()
			return nil
		case <-t.C:
		case <-in.full:
		}
		in.mu.Lock()
		out.Records, in.pending.Records = in.pending.Records, out.Records[:0]
		in.space.Broadcast()
		in.mu.Unlock()
		for len(out.Records) > 0 {
			n := min(len(out.Records), in.batchSize)
			chunk := bus.Batch{Records: out.Records[:n]}
			if err := in.env.Emit(ctx, &chunk); err != nil {
				return err
			}
			out.Records = out.Records[n:]
		}
		out.Records = out.Records[:0:cap(out.Records)]
	}
}
