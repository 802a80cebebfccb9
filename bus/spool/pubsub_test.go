package spool

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// TestPubSub runs watermill's conformance suite, once per permutation. Each
// constructor call opens another handle on the same directory, so the
// Persistent cases really reopen the spool from disk whenever every handle
// of the previous round is closed.
func TestPubSub(t *testing.T) {
	for _, p := range permutations {
		t.Run(p.name, func(t *testing.T) {
			cfg := testConfig(t, p.encrypt)
			cfg.SegmentSize = 1 << 20
			tests.TestPubSub(t, tests.Features{
				GuaranteedOrder:                     true,
				GuaranteedOrderWithSingleSubscriber: true,
				Persistent:                          true,
			}, func(t *testing.T) (message.Publisher, message.Subscriber) {
				// Separate handles: the suite closes a publisher it does not
				// need while it keeps the subscriber.
				pub, err := Open(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				sub, err := Open(cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				return pub, sub
			}, nil)
		})
	}
}
