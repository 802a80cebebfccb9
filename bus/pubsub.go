package bus

import (
	"log/slog"

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

// InProcess reports whether p is the in-process bus, whose Publish returns
// only once every subscriber in this process has acknowledged: a batch
// published on it may be lent (Lend) rather than encoded.
func InProcess(p message.Publisher) bool {
	_, ok := p.(memory)
	return ok
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
