package bus

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// PubSub is a bus backend. Any watermill Publisher+Subscriber fits, which is
// what lets the durable spool and a NATS JetStream backend stand in for the
// in-process channel without callers changing.
type PubSub interface {
	message.Publisher
	message.Subscriber
}

// NewMemory returns the in-process backend. Publish blocks until every
// subscriber has acknowledged: that keeps batches in order (watermill's
// GoChannel reorders otherwise) and gives back-pressure from sinks to
// sources instead of unbounded queues. Because the publisher waits, a batch
// can cross it by reference (Lend) instead of encoded.
func NewMemory(logger *slog.Logger) PubSub {
	return memory{gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer:            16,
		BlockPublishUntilSubscriberAck: true,
	}, WatermillLogger(logger))}
}

type memory struct{ *gochannel.GoChannel }

// InProcess reports whether p (a publisher or subscriber) is the in-process
// bus, whose Publish returns only once every subscriber in this process has
// acknowledged: a batch published on it may be lent (Lend) rather than
// encoded, and refused (Refuse).
func InProcess(p any) bool {
	_, ok := p.(memory)
	return ok
}

// ErrStopping refuses a batch because the pipeline is stopping and the
// queue it was routed to could only take it after waiting for room.
var ErrStopping = errors.New("refused: the pipeline is stopping")

// refused holds, by message UUID, why a subscriber refused a message of
// the in-process bus (Refuse), until its Publish returns.
var refused sync.Map

// Refuse answers msg, received on the in-process bus, with err: its
// publisher's Publish returns err instead of nil, so the source keeps what
// it sent (a file tail does not move its offset past it). The in-process
// bus has no other way to say no: a Nack is
// delivered again at once and holds the publisher until the subscriber
// goes away.
func Refuse(msg *message.Message, err error) {
	refused.Store(msg.UUID, err)
	msg.Ack()
}

// Publish publishes on the channel and returns what a subscriber that
// refused a message said.
func (m memory) Publish(topic string, msgs ...*message.Message) error {
	err := m.GoChannel.Publish(topic, msgs...)
	for _, msg := range msgs {
		if r, ok := refused.LoadAndDelete(msg.UUID); ok && err == nil {
			err = r.(error)
		}
	}
	return err
}

// WatermillLogger adapts slog for watermill, one level quieter: watermill
// logs every unrouted message at Info.
func WatermillLogger(logger *slog.Logger) watermill.LoggerAdapter {
	if logger == nil {
		return watermill.NopLogger{}
	}
	return watermill.NewSlogLoggerWithLevelMapping(logger.With("component", "bus"), map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelDebug: slog.LevelDebug - 4,
	})
}
