package natsbus_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/ferry-gateway/ferry/bus/natsbus"
	"github.com/ferry-gateway/ferry/internal/natstest"
)

// TestPubSub runs watermill's conformance suite on the nats backend,
// against a real nats-server. Publisher and subscriber are separate
// handles: the suite closes one while it keeps the other.
func TestPubSub(t *testing.T) {
	srv := natstest.Start(t)
	open := func(t *testing.T, group string) *natsbus.Bus {
		b, err := natsbus.Open(context.Background(), natsbus.Config{URL: []string{srv.URL()}}, natsbus.Options{Group: group}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		// A consumer group lets one batch out at a time (that is what
		// keeps order across instances), so the suite's 5,000-message
		// cases measure round trips, not behaviour; the short counts test
		// the same things. BenchmarkPipelineBus in router measures speed.
		ForceShort: true,
	}, func(t *testing.T) (message.Publisher, message.Subscriber) {
		// ferry's own consumers: one per topic, shared by every handle.
		return open(t, ""), open(t, "")
	}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return open(t, group), open(t, group)
	})
}
