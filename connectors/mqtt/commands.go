package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/connectors/topics"
)

// commander takes write-back commands from the cloud broker: the
// embedded broker's format and rules (connectors/command), results
// published back on the same connection, and repeats of a command id
// answered from a cache instead of written twice.
type commander struct {
	m       *MQTT
	cfg     *Commands
	filter  string // the subscription, {site} and {module} filled in
	prefix  string // filter without the trailing #
	results string
	queue   chan *command.Command
	cache   *command.Cache
}

// IoT Hub's direct methods: requests arrive on
// $iothub/methods/POST/<method>/?$rid=<id>, answers go to
// $iothub/methods/res/<status>/?$rid=<id>.
const (
	methodsFilter  = "$iothub/methods/POST/#"
	methodsPrefix  = "$iothub/methods/POST/"
	methodResponse = "$iothub/methods/res/"
	// methodWrite is the one method ferry serves: its payload is a
	// command, as a cloud-to-device message's is.
	methodWrite = "write"
)

// commandQueue bounds the commands waiting for the device: more are
// refused at once rather than left to expire.
const commandQueue = 64

func newCommander(m *MQTT, site, module string) *commander {
	r := strings.NewReplacer("{site}", site, "{module}", module)
	filter := r.Replace(m.Commands.Topic)
	return &commander{
		m: m, cfg: m.Commands, filter: filter,
		prefix:  strings.TrimSuffix(filter, "#"),
		results: r.Replace(m.Commands.Results),
		queue:   make(chan *command.Command, commandQueue),
		cache:   command.NewCache(m.Commands.Remember),
	}
}

// isMethod reports whether topic is an IoT Hub direct-method request: with
// the azure-iot-hub preset a method "write" is a command, answered on its
// response topic with an HTTP-like status.
func (k *commander) isMethod(topic string) bool {
	return k.m.azure != nil && strings.HasPrefix(topic, methodsPrefix)
}

// filters are the subscriptions commands arrive on.
func (k *commander) filters() []string {
	if k.m.azure != nil {
		return []string{k.filter, methodsFilter}
	}
	return []string{k.filter}
}

// matches reports whether a received message is a command.
func (k *commander) matches(topic string) bool {
	return topics.Match(k.filter, topic) || k.isMethod(topic)
}

// parseMethod reads a direct-method request: the method's name, its
// request id, and the command its payload holds. The reply topic carries
// the status 404 for a method ferry does not serve, else a {status} that
// reply fills in from the result.
func parseMethod(topic string, payload []byte, now time.Time) (*command.Command, error) {
	name, query, _ := strings.Cut(strings.TrimPrefix(topic, methodsPrefix), "/?")
	rid := ""
	if q, err := url.ParseQuery(query); err == nil {
		rid = q.Get("$rid")
	}
	if name != methodWrite {
		c := &command.Command{Received: now, Reply: methodResponse + "404/?$rid=" + rid}
		return c, fmt.Errorf("%w: method %q: the one method is %q, with a command as its payload", command.ErrRefused, name, methodWrite)
	}
	c, err := command.ParsePayload(payload, now)
	if c == nil {
		c = &command.Command{Received: now}
	}
	c.Reply = methodResponse + "{status}/?$rid=" + rid
	return c, err
}

// methodStatus is the status of a direct method's answer: 200 done, 400
// refused (the command or the device's rules), 500 failed on the device.
func methodStatus(r command.Result) string {
	switch {
	case r.Status == command.StatusOK:
		return "200"
	case r.Status == command.StatusRefused:
		return "400"
	}
	return "500"
}

// receive parses a command on paho's delivery goroutine and queues it for
// the worker: a slow device must not hold up the connection.
func (k *commander) receive(msg inbound) {
	var c *command.Command
	var err error
	switch {
	case k.isMethod(msg.topic):
		c, err = parseMethod(msg.topic, msg.payload, time.Now())
	case k.cfg.fromPayload:
		c, err = command.ParsePayload(msg.payload, time.Now())
	default:
		c, err = command.Parse(strings.TrimPrefix(msg.topic, k.prefix), msg.payload, time.Now())
	}
	if c.Reply == "" {
		c.Reply, c.Correlation = msg.responseTopic, msg.correlation
	}
	k.m.env.Event(connectors.Event{Kind: connectors.EventCommand, Message: k.describe("command received", c)})
	if err != nil {
		k.reply(c, command.NewResult(c, err))
		return
	}
	first, r, done := k.cache.Begin(c)
	if !first {
		// A repeat (QoS 1 redelivery, a sender's retry): answered with
		// the first outcome, or when that is known.
		if done {
			k.m.env.Event(connectors.Event{Kind: connectors.EventCommand, Message: k.describe("command repeated, answered from cache", c)})
			k.reply(c, r)
		}
		return
	}
	select {
	case k.queue <- c:
	default:
		r := command.NewResult(c, fmt.Errorf("%w: too many commands waiting", command.ErrRefused))
		k.cache.Done(c, r)
		k.reply(c, r)
	}
}

func (k *commander) describe(what string, c *command.Command) string {
	s := what + " " + c.Device + "/" + c.Tag
	if c.ID != "" {
		s += " id " + c.ID
	}
	return s
}

// run executes queued commands in order; the queue outlives a restart.
func (k *commander) run(ctx context.Context) error {
	rules := command.Rules{MaxTTL: k.cfg.MaxTTL.D(), Timeout: k.cfg.Timeout.D()}
	for {
		select {
		case <-ctx.Done():
			return nil
		case c := <-k.queue:
			k.execute(ctx, c, rules)
		}
	}
}

func (k *commander) execute(ctx context.Context, c *command.Command, rules command.Rules) {
	var r command.Result
	defer func() {
		// A writer that panics still gets its sender an answer; the panic
		// goes on to the Env, which restarts the loop.
		if p := recover(); p != nil {
			r = command.NewResult(c, fmt.Errorf("panic: %v", p))
			k.cache.Done(c, r)
			k.reply(c, r)
			panic(p)
		}
	}()
	r = command.NewResult(c, c.Execute(ctx, rules, k.m.env.WriteTag))
	k.cache.Done(c, r)
	k.reply(c, r)
}

// reply publishes r at QoS 1 on the command's response topic (MQTT 5, or
// a direct method's), or on <results>/<device>/<tag>, and records it as an
// event.
func (k *commander) reply(c *command.Command, r command.Result) {
	ev := connectors.Event{Kind: connectors.EventCommand, Message: k.describe("command "+r.Status, c), Error: r.Error}
	k.m.env.Event(ev)
	if r.Status != command.StatusOK {
		k.m.env.Logger.Info("command not done", "device", c.Device, "tag", c.Tag, "id", c.ID, "status", r.Status, "error", r.Error)
	}
	topic, kind := c.Reply, ""
	if strings.HasPrefix(topic, methodResponse) {
		topic = strings.Replace(topic, "{status}", methodStatus(r), 1)
	}
	if topic == "" {
		topic = strings.TrimSuffix(k.results, "/") + "/" + c.Device + "/" + c.Tag
		if k.m.azure != nil {
			// IoT Hub takes nothing but its events topic: the result is a
			// device-to-cloud message marked as one.
			topic, kind = k.results, "command-result"
		}
	}
	payload, _ := json.Marshal(r)
	if err := k.m.publish(topic, payload, props{contentType: "application/json", correlation: c.Correlation}, kind); err != nil {
		k.m.env.Error(fmt.Errorf("command result %s: %w", topic, err))
	}
}

// publish sends one message outside the batch path (a command result) and
// waits for its PUBACK. It takes its turn with the batches on sendMu, so
// the connection's sends never overlap.
func (m *MQTT) publish(topic string, payload []byte, p props, kind string) error {
	m.mu.Lock()
	c := m.cur
	m.mu.Unlock()
	if c == nil {
		return connectors.ErrNotConnected
	}
	if m.azure != nil && !strings.HasPrefix(topic, "$iothub/") {
		// Device-to-cloud messages carry their property bag; IoT Hub's
		// own topics (a direct method's answer) do not take one.
		topic += azureBag(p, kind)
	}
	m.sendMu.Lock()
	if bm, ok := c.(backfillMarker); ok {
		bm.markBackfill(false) // a result is not backfill, whatever the last batch was
	}
	wait, err := c.send(topic, payload, p)
	m.sendMu.Unlock()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.AckTimeout.D())
	defer cancel()
	if err := wait(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("no PUBACK within %v", m.AckTimeout.D())
		}
		return err
	}
	return nil
}
