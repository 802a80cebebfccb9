// Package mqtt is the MQTT uplink: a sink that publishes batches to a cloud
// broker over MQTT 5 or 3.1.1, TCP or TLS, at QoS 1, and counts a batch as
// sent only when every message of it was acknowledged.
package mqtt

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/compress"
	"github.com/ferry-gateway/ferry/connectors/topics"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "mqtt",
		Roles:   connectors.RoleSink | connectors.RoleSource,
		New:     func() connectors.Connector { return &MQTT{} },
		Sample:  sample,
		Summary: "MQTT 3.1.1/5 over TCP or TLS: uplink at QoS 1 (Avro or JSON), and subscriptions parsed into records",
	})
}

// MQTT is the uplink sink.
type MQTT struct {
	Config `yaml:",inline"`

	env   *connectors.Env
	topic topics.Template

	mu      sync.Mutex
	cur     conn
	changed chan struct{} // closed and replaced when cur changes

	sendMu sync.Mutex // keeps sends in order on the connection
	// Under sendMu, set up on the first send.
	res    *topics.Resolver
	enc    *bus.JSONEncoder
	shape  bus.JSONShape
	isJSON bool
	groups []topics.Group
	bufs   bus.Buffers

	in  *inbox     // nil unless subscribed
	cmd *commander // nil unless commands are taken
	z   *compress.Compressor

	timing    linkTiming // zero: defaults (tests shorten it)
	takeovers prometheus.Counter
}

// linkTiming is how the link loop judges a connection that ends.
type linkTiming struct {
	// stableAfter: a connection that stayed up this long resets the
	// back-off. Resetting on every successful connect made a broker that
	// accepts and then drops (a duplicate client id) a tight loop: about
	// 16,000 connections in 12 s (issue 12).
	stableAfter time.Duration
	// quickDrop and quickDrops: a broker that closed quickDrops
	// connections in a row, each within quickDrop of accepting it, is
	// taken to be handing the session to another client with the same id.
	// MQTT 3.1.1 has no way to say so; an MQTT 5 broker sends DISCONNECT
	// 0x8E, which counts at once.
	quickDrop  time.Duration
	quickDrops int
	// takeoverMin and takeoverMax bound the back-off after a takeover:
	// longer than after a plain loss, since reconnecting at once only takes
	// the session back from the other client, which then does the same.
	takeoverMin, takeoverMax time.Duration
}

// Defaults of linkTiming.
const (
	stableAfter = 10 * time.Second
	quickDrop   = 5 * time.Second
	quickDrops  = 3
	takeoverMin = time.Second
	takeoverMax = time.Minute
)

func (lt *linkTiming) setDefaults(reconnectMax time.Duration) {
	if lt.stableAfter == 0 {
		lt.stableAfter = stableAfter
	}
	if lt.quickDrop == 0 {
		lt.quickDrop = quickDrop
	}
	if lt.quickDrops == 0 {
		lt.quickDrops = quickDrops
	}
	if lt.takeoverMin == 0 {
		lt.takeoverMin = takeoverMin
	}
	if lt.takeoverMax == 0 {
		lt.takeoverMax = max(takeoverMax, reconnectMax)
	}
}

// TakeoversMetric counts connections that ended because another client
// with the same client id took the session (reported by the broker, or
// inferred from repeated quick drops).
func TakeoversMetric() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_mqtt_session_takeovers_total",
		Help: "MQTT connections that ended because another client with the same client id took the session (MQTT 5 DISCONNECT 0x8E, or repeated drops right after connecting).",
	}, []string{"module"})
}

// Outputs implements connectors.Source: an instance with subscriptions emits
// on "out"; one without is only an uplink.
func (m *MQTT) Outputs() []string {
	if len(m.Subscribe) == 0 {
		return nil
	}
	return []string{connectors.DefaultOutput}
}

// Start starts the link loop; the first connection is made in the
// background, so a broker that is down is a sink that is down, not a failed
// start.
func (m *MQTT) Start(_ context.Context, env *connectors.Env) error {
	t, err := topics.Parse(m.Topic)
	if err != nil {
		return err
	}
	m.env, m.topic = env, t
	m.changed = make(chan struct{})
	if m.ClientID == "" {
		m.ClientID = "ferry-" + env.Site + "-" + env.Name
		if env.Instance != "" {
			// Instances sharing a bus run the same config; a broker drops
			// one of two clients with the same id.
			m.ClientID += "-" + env.Instance
		}
	}
	if len(m.Subscribe) > 0 {
		in, err := newInbox(env, m.Subscribe, m.BatchSize)
		if err != nil {
			return err
		}
		m.in = in
		env.Go("flush", func(ctx context.Context) error { return in.Run(ctx, m.BatchInterval.D()) })
	}
	if m.Commands != nil {
		m.cmd = newCommander(m, env.Site, env.Name)
		env.Go("commands", m.cmd.run)
	}
	m.timing.setDefaults(m.ReconnectMax.D())
	m.takeovers = connectors.Collector(env.Metrics.Reg, TakeoversMetric()).WithLabelValues(env.Name)
	env.Connecting()
	env.Go("link", m.link)
	return nil
}

// link keeps one connection up, reconnecting with back-off and jitter. It
// never opens a second connection while one is up. The back-off starts over
// only once a connection has stayed up for stableAfter, so a broker that
// accepts and then drops at once is retried ever more slowly, not in a loop.
func (m *MQTT) link(ctx context.Context) error {
	bo := connectors.Backoff{Max: m.ReconnectMax.D()}
	tbo := connectors.Backoff{Min: m.timing.takeoverMin, Max: m.timing.takeoverMax}
	var quick int     // connections in a row the broker dropped soon after accepting
	var fighting bool // the last connection was lost to a takeover
	for ctx.Err() == nil {
		cr, renewAt := m.credentials()
		c, err := dial(ctx, &m.Config, m.ClientID, cr, m.handler())
		if err == nil {
			err = m.subscribeAll(ctx, c)
		}
		if err != nil {
			m.env.Down(fmt.Errorf("connect %s: %w", m.URL, err))
			if connectors.Sleep(ctx, bo.Next()) != nil {
				return nil
			}
			continue
		}
		m.setConn(c)
		m.env.Up()
		upAt := time.Now()
		var renew <-chan time.Time // nil: never
		if !renewAt.IsZero() {
			renew = time.After(time.Until(renewAt))
		}
		select {
		case <-c.done():
			m.setConn(nil)
		case <-renew:
			// The hub drops a connection whose token expired; reconnecting
			// with a fresh one first costs a reconnect and no refusal.
			// Unacknowledged publishes fail and are sent again, in order.
			m.setConn(nil)
			c.close()
			m.env.Logger.Info("credentials renewed: reconnecting with a new token", "url", m.URL)
			continue
		case <-ctx.Done():
			m.setConn(nil)
			c.close()
			return nil
		}
		lived := time.Since(upAt)
		if lived >= m.timing.stableAfter {
			bo.Reset()
			tbo.Reset()
		}
		takeover, err := m.ended(c, lived, &quick)
		wait := bo.Next()
		if takeover {
			m.takeovers.Inc()
			wait = tbo.Next()
			if !fighting {
				// One line when the fight starts; the repeats are counted
				// in the metric and kept in last_error.
				m.env.Logger.Warn("session taken over", "client_id", m.ClientID, "url", m.URL,
					"error", err.Error(), "retry_in", wait.Round(time.Millisecond).String())
			}
		}
		fighting = takeover
		m.env.Down(err)
		if connectors.Sleep(ctx, wait) != nil {
			return nil
		}
	}
	return nil
}

// ended says why c ended after being up for lived, and whether that was a
// takeover of its session; quick counts the quick drops in a row.
func (m *MQTT) ended(c conn, lived time.Duration, quick *int) (bool, error) {
	cause := c.cause()
	switch {
	case takenOver(cause):
		*quick = 0
		return true, fmt.Errorf("connection to %s ended: session taken over by another client with the same client id %q: %w", m.URL, m.ClientID, cause)
	case errors.Is(cause, errClosedHere):
		// Dropped for a missing PUBACK (a stuck link): not the broker's doing.
		*quick = 0
		return false, fmt.Errorf("connection to %s closed: no PUBACK within %v, link treated as down", m.URL, m.AckTimeout.D())
	case cause != nil:
		*quick = 0
		return false, fmt.Errorf("connection to %s ended: %w", m.URL, cause)
	case lived >= m.timing.quickDrop:
		*quick = 0
		return false, fmt.Errorf("connection to %s lost", m.URL)
	}
	*quick++
	if *quick < m.timing.quickDrops {
		return false, fmt.Errorf("connection to %s lost %v after connecting", m.URL, lived.Round(time.Millisecond))
	}
	return true, fmt.Errorf("connection to %s lost %v after connecting, %d times in a row: session taken over by another client with the same client id %q, probably (two gateways or instances sharing one client_id)",
		m.URL, lived.Round(time.Millisecond), *quick, m.ClientID)
}

// subscribeAll subscribes on a fresh connection: the session is clean, so
// every reconnect subscribes again.
func (m *MQTT) subscribeAll(ctx context.Context, c conn) error {
	subs := m.Subscribe
	if m.cmd != nil {
		subs = slices.Clip(subs)
		for _, f := range m.cmd.filters() {
			subs = append(subs, Subscription{Topic: f, QoS: m.Commands.QoS})
		}
	}
	for _, s := range subs {
		sctx, cancel := context.WithTimeout(ctx, m.AckTimeout.D())
		err := c.subscribe(sctx, s.Topic, byte(s.QoS))
		cancel()
		if err != nil {
			c.close()
			return fmt.Errorf("subscribe %s: %w", s.Topic, err)
		}
	}
	return nil
}

// handler dispatches received messages: commands to the commander, the
// rest to the subscriptions' parsers.
func (m *MQTT) handler() handler {
	switch {
	case m.cmd == nil && m.in == nil:
		return nil
	case m.cmd == nil:
		return m.in.receive
	}
	return func(msg inbound) {
		if m.cmd.matches(msg.topic) {
			m.cmd.receive(msg)
			return
		}
		if m.in != nil {
			m.in.receive(msg)
		}
	}
}

func (m *MQTT) setConn(c conn) {
	m.mu.Lock()
	m.cur = c
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// connection waits until a connection is up or ctx ends. Waiting here,
// rather than failing, is what lets a backlog start draining the moment the
// link is back instead of after the runtime's next back-off.
func (m *MQTT) connection(ctx context.Context) (conn, error) {
	for {
		m.mu.Lock()
		c, ch := m.cur, m.changed
		m.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("mqtt %s: %w", m.URL, connectors.ErrNotConnected)
		}
	}
}

// dropConn closes c when it is still the current connection: the link loop
// then sees it lost and reconnects.
func (m *MQTT) dropConn(c conn) {
	m.mu.Lock()
	cur := m.cur
	m.mu.Unlock()
	if cur == c {
		c.close()
	}
}

// Write publishes b, one message per rendered topic (per record with format
// json), and returns once every message was acknowledged. It waits (up to
// ack_timeout) for a connection when the link is down, so a backlog starts
// draining the moment it is back.
func (m *MQTT) Write(ctx context.Context, b *bus.Batch) error {
	waitCtx, cancel := context.WithTimeout(ctx, m.AckTimeout.D())
	c, err := m.connection(waitCtx)
	cancel()
	if err != nil {
		return err
	}
	wait, err := m.sendOn(c, b)
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Send hands b's messages to the connection in order and returns without
// waiting for their PUBACKs; wait does, up to ack_timeout. With the link
// down it fails at once instead of waiting: the runtime then writes the
// failed batches again, in order, before it sends anything newer, so a
// reconnect never lets a newer batch overtake an older one.
func (m *MQTT) Send(_ context.Context, b *bus.Batch) (func(context.Context) error, error) {
	m.mu.Lock()
	c := m.cur
	m.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("mqtt %s: %w", m.URL, connectors.ErrNotConnected)
	}
	return m.sendOn(c, b)
}

// sendOn sends b's messages on c. A message not acknowledged within
// ack_timeout means a stuck link: the connection is dropped so the link loop
// makes a new one, and the runtime retries the batch.
func (m *MQTT) sendOn(c conn, b *bus.Batch) (func(context.Context) error, error) {
	m.sendMu.Lock()
	m.prepare()
	if bm, ok := c.(backfillMarker); ok {
		bm.markBackfill(b.Backfill)
	}
	var sent []pending
	var err error
	if m.shape == bus.JSONObjectShape && m.isJSON {
		sent = make([]pending, 0, len(b.Records))
		for i := range b.Records {
			if sent, err = m.sendOne(c, sent, m.res.Topic(&b.Records[i]), b.Records[i:i+1]); err != nil {
				break
			}
		}
	} else {
		m.groups = m.res.Group(m.groups[:0], b.Records)
		sent = make([]pending, 0, len(m.groups))
		for _, g := range m.groups {
			if sent, err = m.sendOne(c, sent, g.Topic, g.Records); err != nil {
				break
			}
		}
		clear(m.groups) // let the records go
	}
	m.sendMu.Unlock()
	if err != nil {
		return nil, err
	}
	at := time.Now()
	return func(ctx context.Context) error {
		// The ack timeout runs from the send, not from when the caller got
		// round to waiting.
		wctx, cancel := context.WithDeadline(ctx, at.Add(m.AckTimeout.D()))
		defer cancel()
		for i := range sent {
			p := &sent[i]
			err := p.wait(wctx)
			timedOut := wctx.Err() != nil && ctx.Err() == nil
			switch {
			case err == nil:
				// Acknowledged: the client has let go of the payload.
				m.bufs.Put(p.buf)
				p.buf = nil
				continue
			case timedOut:
				m.dropConn(c)
				return fmt.Errorf("mqtt %s: publish %s: no PUBACK within %v: link treated as down", m.URL, p.topic, m.AckTimeout.D())
			case errors.Is(err, errRejected):
				return fmt.Errorf("mqtt %s: %w: %w", m.URL, connectors.ErrPoison, err)
			default:
				return fmt.Errorf("mqtt %s: publish %s: %w", m.URL, p.topic, err)
			}
		}
		return nil
	}, nil
}

// pending is a message sent and not yet acknowledged.
type pending struct {
	topic string
	wait  func(context.Context) error
	// buf holds the payload; it goes back to the pool once acknowledged.
	// A message that failed may still be referred to by the client (a
	// queue, a resend), so its buffer is left to the GC.
	buf *bus.Buffer
}

// prepare sets up the encoding state on first use; called under sendMu.
func (m *MQTT) prepare() {
	if m.res != nil {
		return
	}
	m.res = topics.NewResolver(m.topic, m.env.Site, m.env.Name)
	m.shape, m.isJSON = bus.ParseJSONShape(m.Format)
	m.enc = m.JSONOutput.Encoder()
	// Validate has checked the name: New cannot fail here.
	m.z, _ = compress.New(m.Compress)
}

// sendOne encodes the records of one message into a pooled buffer and
// sends it; the buffer is owned by the connection until acknowledged (it
// may resend it). A payload over max_payload is split in two, in order,
// until the halves fit; a single record too large is dropped and counted.
func (m *MQTT) sendOne(c conn, sent []pending, topic string, recs []bus.Record) ([]pending, error) {
	buf := m.bufs.Get()
	var p props
	if m.isJSON {
		buf.B = m.shape.Append(m.enc, buf.B, recs)
		p.contentType = m.shape.ContentType()
	} else {
		b := bus.Batch{Records: recs}
		buf.B = b.AppendAvro(buf.B)
		p.contentType, p.schema = bus.ContentTypeAvro, bus.FingerprintHex()
	}
	if m.z != nil {
		z := m.bufs.Get()
		z.B = m.z.Append(z.B, buf.B)
		m.bufs.Put(buf)
		buf, p.encoding = z, m.z.Encoding()
	}
	if limit := int(m.MaxPayload); limit > 0 && len(buf.B) > limit {
		m.bufs.Put(buf)
		if len(recs) == 1 {
			m.env.Dropped(1, fmt.Sprintf("a record's payload is larger than max_payload %d", limit),
				fmt.Errorf("%s/%s on %s", recs[0].Device, recs[0].Tag, topic))
			return sent, nil
		}
		half := len(recs) / 2
		sent, err := m.sendOne(c, sent, topic, recs[:half])
		if err != nil {
			return sent, err
		}
		return m.sendOne(c, sent, topic, recs[half:])
	}
	if m.azure != nil {
		topic += azureBag(p, "")
	}
	w, err := c.send(topic, buf.B, p)
	if err != nil {
		return sent, fmt.Errorf("mqtt %s: publish %s: %w", m.URL, topic, err)
	}
	return append(sent, pending{topic: topic, wait: w, buf: buf}), nil
}

// Stop ends the link loop (via the Env) and waits briefly for nothing else:
// in-flight publishes are bounded by ack_timeout.
func (m *MQTT) Stop(context.Context) error { return nil }

var (
	_ connectors.Pipeliner = (*MQTT)(nil)
	_ connectors.Source    = (*MQTT)(nil)
)
