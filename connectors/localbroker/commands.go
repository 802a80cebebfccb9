package localbroker

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferry-gateway/ferry/connectors/command"
)

// Result is what is published back (the shared command result).
type Result = command.Result

// errRefused marks a command that never reached a device.
var errRefused = command.ErrRefused

// commandHandler queues commands for one worker, so writes reach devices in
// the order they were published and the broker's delivery is not held up by
// a slow device.
func (b *Broker) commandHandler(queue chan<- *command.Command) mqtt.InlineSubFn {
	prefix := b.Commands.Topic + "/"
	return func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		c, err := command.Parse(strings.TrimPrefix(pk.TopicName, prefix), pk.Payload, time.Now())
		c.Reply, c.Correlation = pk.Properties.ResponseTopic, pk.Properties.CorrelationData
		if err != nil {
			b.reply(c, err)
			return
		}
		select {
		case queue <- c:
		default:
			b.reply(c, fmt.Errorf("%w: too many commands waiting", errRefused))
		}
	}
}

// runCommands executes queued commands in order. The queue outlives it, so
// a restart by the Env goes on with the next command.
func (b *Broker) runCommands(ctx context.Context, queue <-chan *command.Command) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-queue:
			b.runCommand(ctx, c)
		}
	}
}

// runCommand executes one command. A writer that panics still gets its
// sender a "failed" result; the panic then goes on to the Env, which logs
// it and restarts the loop.
func (b *Broker) runCommand(ctx context.Context, c *command.Command) {
	defer func() {
		if p := recover(); p != nil {
			b.reply(c, fmt.Errorf("panic: %v", p))
			panic(p)
		}
	}()
	rules := command.Rules{MaxTTL: b.Commands.MaxTTL.D(), Timeout: b.Commands.Timeout.D()}
	b.reply(c, c.Execute(ctx, rules, b.env.WriteTag))
}

// reply publishes the outcome and logs refusals and failures once per burst.
func (b *Broker) reply(c *command.Command, err error) {
	r := command.NewResult(c, err)
	if err != nil {
		b.env.Error(fmt.Errorf("command %s/%s: %w", c.Device, c.Tag, err))
	}
	topic := c.Reply
	if topic == "" {
		topic = b.Commands.Results + "/" + c.Device + "/" + c.Tag
	}
	payload, _ := json.Marshal(r)
	if perr := b.srv.Publish(topic, payload, false, 1); perr != nil {
		b.env.Error(fmt.Errorf("command result %s: %w", topic, perr))
	}
}
