package outlet

import (
	"context"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
)

// Bus is a queue kept by a watermill Publisher/Subscriber: the local spool
// or a sink's JetStream stream. Its subscription outlives the runners that
// read it, so a reload that swaps the runner leaves no batch in a gap.
type Bus struct {
	ps    bus.PubSub
	topic string
	// halt ends a Put waiting on the backend (a full spool under
	// on_full: block) once Stopping is called.
	halt context.Context
	stop context.CancelFunc

	mu   sync.Mutex
	msgs <-chan *message.Message
	end  context.CancelFunc
	dec  bus.Decoder // Next is called by one runner at a time
}

// NewBus returns the queue on ps's topic. It subscribes at the first Next.
func NewBus(ps bus.PubSub, topic string) *Bus {
	halt, stop := context.WithCancel(context.Background())
	return &Bus{ps: ps, topic: topic, halt: halt, stop: stop}
}

// Stopping makes a Put that waits for room, and every later one that
// would, give up with bus.ErrStopping: the pipeline is shutting down and the
// sources behind the queue must be able to finish. What the queue did not
// take it never promised to keep: the source still has it (a file tail
// does not move its offset past it) or it was a sample of the moment.
func (q *Bus) Stopping() { q.stop() }

// Put encodes b (the one place a routed batch is encoded) and publishes it.
func (q *Bus) Put(ctx context.Context, b *bus.Batch, m Meta) error {
	return q.publish(ctx, bus.NewMessage(b), m)
}

func (q *Bus) publish(ctx context.Context, msg *message.Message, m Meta) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(q.halt, cancel)()
	msg.SetContext(ctx)
	msg.Metadata.Set(MetaPriority, m.priority())
	if m.TTL > 0 {
		msg.Metadata.Set(MetaTTL, m.TTL.String())
	}
	err := q.ps.Publish(q.topic, msg)
	if err != nil && q.halt.Err() != nil {
		return fmt.Errorf("%w: %w", bus.ErrStopping, err)
	}
	return err
}

func (q *Bus) subscription() (<-chan *message.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.msgs != nil {
		return q.msgs, nil
	}
	ctx, end := context.WithCancel(context.Background())
	msgs, err := q.ps.Subscribe(ctx, q.topic)
	if err != nil {
		end()
		return nil, fmt.Errorf("outlet: subscribe %s: %w", q.topic, err)
	}
	q.msgs, q.end = msgs, end
	return msgs, nil
}

// Next receives and decodes the next batch.
func (q *Bus) Next(ctx context.Context) (*Delivery, error) {
	msgs, err := q.subscription()
	if err != nil {
		return nil, err
	}
	var msg *message.Message
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case m, ok := <-msgs:
		if !ok {
			return nil, ErrClosed
		}
		msg = m
	}
	return q.deliver(msg)
}

// deliver decodes a message of the subscription into a Delivery.
func (q *Bus) deliver(msg *message.Message) (*Delivery, error) {
	b := &bus.Batch{}
	if err := q.dec.DecodeMessage(msg, b); err != nil {
		msg.Ack()
		return nil, fmt.Errorf("%w: %w", ErrUndecodable, err)
	}
	return &Delivery{Batch: b, ack: func() { msg.Ack() }, nack: func() { msg.Nack() }}, nil
}

// Release ends the subscription: a shared JetStream queue then hands what
// this instance held to the instances whose sink runs. The next Next
// subscribes again.
func (q *Bus) Release() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.end != nil {
		q.end()
	}
	q.msgs, q.end = nil, nil
}

// Close ends the subscription. The backend (spool, stream) is its owner's
// to close.
func (q *Bus) Close() error {
	q.Release()
	return nil
}

var _ Queue = (*Bus)(nil)
