package bus

import (
	"fmt"
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

// Config selects and tunes the bus backend.
type Config struct {
	// Type is the backend: "memory" (in-process, the default).
	Type string `yaml:"type"`
}

// Backends lists the values Config.Type accepts.
var Backends = []string{"memory"}

// SetDefaults fills the backend type.
func (c *Config) SetDefaults() {
	if c.Type == "" {
		c.Type = "memory"
	}
}

// New builds the configured backend.
func New(c Config, logger *slog.Logger) (PubSub, error) {
	c.SetDefaults()
	switch c.Type {
	case "memory":
		return NewMemory(logger), nil
	}
	return nil, fmt.Errorf("bus type %q is not one of %v", c.Type, Backends)
}

// NewMemory returns the in-process backend. Publish blocks until every
// subscriber has acknowledged: that keeps batches in order (watermill's
// GoChannel reorders otherwise) and gives back-pressure from sinks to
// sources instead of unbounded queues.
func NewMemory(logger *slog.Logger) PubSub {
	return gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer:            16,
		BlockPublishUntilSubscriberAck: true,
	}, WatermillLogger(logger))
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
