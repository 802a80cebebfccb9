package mqtt

import (
	"fmt"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/topics"
)

// inbox reads subscribed messages: the first subscription whose filter
// matches a message's topic parses it into the batcher.
type inbox struct {
	*parse.Batcher
	subs    []Subscription
	parsers []*parse.Parser
}

func newInbox(env *connectors.Env, subs []Subscription, batchSize int) (*inbox, error) {
	in := &inbox{Batcher: parse.NewBatcher(env, batchSize), subs: subs}
	for i, s := range subs {
		p, err := parse.New(s.Parse)
		if err != nil {
			return nil, fmt.Errorf("subscribe[%d]: %w", i, err)
		}
		in.parsers = append(in.parsers, p)
	}
	return in, nil
}

func (in *inbox) receive(msg inbound) {
	topic, payload := msg.topic, msg.payload
	for i, s := range in.subs {
		if topics.Match(s.Topic, topic) {
			p := in.parsers[i]
			_ = in.Add(func(dst *bus.Batch) error {
				if err := p.Parse(payload, topic, dst); err != nil {
					return fmt.Errorf("topic %s: %w", topic, err)
				}
				return nil
			})
			return
		}
	}
}
