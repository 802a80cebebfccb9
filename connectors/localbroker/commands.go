package localbroker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// command is one write-back request.
type command struct {
	ID      string          `json:"id,omitempty"`
	Value   json.RawMessage `json:"value"`
	TTL     string          `json:"ttl,omitempty"`    // with ts: valid until ts+ttl
	TS      time.Time       `json:"ts,omitzero"`      // when it was issued
	Expires time.Time       `json:"expires,omitzero"` // or an absolute deadline

	device, tag, reply string
	received           time.Time
}

// Result is what is published back.
type Result struct {
	ID     string          `json:"id,omitempty"`
	Device string          `json:"device"`
	Tag    string          `json:"tag"`
	Value  json.RawMessage `json:"value,omitempty"`
	Status string          `json:"status"` // ok, refused, failed
	Error  string          `json:"error,omitempty"`
}

// errRefused marks a command that never reached a device.
var errRefused = errors.New("refused")

// commandHandler queues commands for one worker, so writes reach devices in
// the order they were published and the broker's delivery is not held up by
// a slow device.
func (b *Broker) commandHandler(queue chan<- *command) mqtt.InlineSubFn {
	prefix := b.Commands.Topic + "/"
	return func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		c := &command{received: time.Now(), reply: pk.Properties.ResponseTopic}
		rest := strings.TrimPrefix(pk.TopicName, prefix)
		device, tag, ok := strings.Cut(rest, "/")
		c.device, c.tag = device, tag
		if !ok || device == "" || tag == "" {
			b.reply(c, fmt.Errorf("%w: topic %s is not %s<device>/<tag>", errRefused, pk.TopicName, prefix))
			return
		}
		if err := json.Unmarshal(pk.Payload, c); err != nil || len(c.Value) == 0 {
			b.reply(c, fmt.Errorf("%w: payload is not {\"value\": …}: %v", errRefused, err))
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
func (b *Broker) runCommands(ctx context.Context, queue <-chan *command) error {
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
func (b *Broker) runCommand(ctx context.Context, c *command) {
	defer func() {
		if p := recover(); p != nil {
			b.reply(c, fmt.Errorf("panic: %v", p))
			panic(p)
		}
	}()
	b.reply(c, b.execute(ctx, c))
}

func (b *Broker) execute(ctx context.Context, c *command) error {
	deadline := c.received.Add(b.Commands.MaxTTL.D())
	switch {
	case !c.Expires.IsZero():
		deadline = c.Expires
	case c.TTL != "":
		ttl, err := time.ParseDuration(c.TTL)
		if err != nil || ttl <= 0 {
			return fmt.Errorf("%w: ttl %q is not a positive duration", errRefused, c.TTL)
		}
		issued := c.TS
		if issued.IsZero() {
			issued = c.received
		}
		deadline = issued.Add(ttl)
	}
	if time.Now().After(deadline) {
		return fmt.Errorf("%w: expired at %s", errRefused, deadline.UTC().Format(time.RFC3339Nano))
	}
	v, err := jsonValue(c.Value)
	if err != nil {
		return fmt.Errorf("%w: %v", errRefused, err)
	}
	wctx, cancel := context.WithTimeout(ctx, b.Commands.Timeout.D())
	defer cancel()
	return b.env.WriteTag(wctx, c.device, c.tag, v)
}

func jsonValue(raw json.RawMessage) (bus.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return bus.Null(), err
	}
	switch t := v.(type) {
	case bool:
		return bus.Bool(t), nil
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return bus.Long(i), nil
		}
		f, err := t.Float64()
		return bus.Double(f), err
	case string:
		return bus.String(t), nil
	}
	return bus.Null(), fmt.Errorf("value must be a number, boolean or string")
}

// reply publishes the outcome and logs refusals and failures once per burst.
func (b *Broker) reply(c *command, err error) {
	r := Result{ID: c.ID, Device: c.device, Tag: c.tag, Value: c.Value, Status: "ok"}
	switch {
	case err == nil:
	case errors.Is(err, errRefused), errors.Is(err, connectors.ErrUnknownTag), errors.Is(err, connectors.ErrNotWritable):
		r.Status, r.Error = "refused", err.Error()
	default:
		r.Status, r.Error = "failed", err.Error()
	}
	if err != nil {
		b.env.Error(fmt.Errorf("command %s/%s: %w", c.device, c.tag, err))
	}
	topic := c.reply
	if topic == "" {
		topic = b.Commands.Results + "/" + c.device + "/" + c.tag
	}
	payload, _ := json.Marshal(r)
	if perr := b.srv.Publish(topic, payload, false, 1); perr != nil {
		b.env.Error(fmt.Errorf("command result %s: %w", topic, perr))
	}
}
