package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"syscall"

	"github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session"
	"github.com/eclipse/paho.golang/paho/session/state"
	memstore "github.com/eclipse/paho.golang/paho/store/memory"
	paho311 "github.com/eclipse/paho.mqtt.golang"
)

// conn is one connection to the broker, whichever protocol version it
// speaks.
type conn interface {
	// send hands a QoS 1 publish to the connection, in call order, and
	// returns without waiting for its PUBACK; wait does. Calls to send must
	// not overlap (the sink serialises them), which is what keeps the
	// messages in order on the wire while their acks are pipelined.
	send(topic string, payload []byte, p props) (wait func(context.Context) error, err error)
	subscribe(ctx context.Context, filter string, qos byte) error
	done() <-chan struct{} // closed when the connection is lost
	// cause says, once done is closed, why the connection ended:
	// errClosedHere when close was called, a *disconnectError when the
	// broker sent DISCONNECT, nil when the network connection just went.
	cause() error
	close()
}

// props are what a message says about its payload. MQTT 3.1.1 has no
// properties, so there they are lost (a preset may carry them in the topic).
type props struct {
	contentType string
	schema      string // the Avro schema fingerprint, hex
	encoding    string // compression, as HTTP's Content-Encoding names it
	correlation []byte // MQTT 5 correlation data of a command's result
}

// inbound is one message received on a subscription.
type inbound struct {
	topic   string
	payload []byte
	// MQTT 5 only: where the sender wants an answer, and what to echo.
	responseTopic string
	correlation   []byte
}

// errClosedHere marks a connection that ferry closed itself.
var errClosedHere = errors.New("closed by ferry")

// reasonSessionTakenOver is the MQTT 5 DISCONNECT reason a broker sends to
// a client whose session another connection with the same client id took.
const reasonSessionTakenOver = 0x8E

// disconnectError is a DISCONNECT the broker sent (MQTT 5 only).
type disconnectError struct {
	code   byte
	reason string // the broker's reason string, often empty
}

func (e *disconnectError) Error() string {
	reason := e.reason
	if reason == "" && e.code == reasonSessionTakenOver {
		reason = "session taken over"
	}
	if reason == "" {
		return fmt.Sprintf("broker sent DISCONNECT with reason 0x%02X", e.code)
	}
	return fmt.Sprintf("broker sent DISCONNECT with reason 0x%02X: %s", e.code, reason)
}

// takenOver reports whether err is the broker's word that another client
// took this client's session.
func takenOver(err error) bool {
	var d *disconnectError
	return errors.As(err, &d) && d.code == reasonSessionTakenOver
}

// ending records, once, why a connection ended.
type ending struct {
	mu  sync.Mutex
	err error
	set bool
}

func (e *ending) record(err error) {
	e.mu.Lock()
	if !e.set {
		e.err, e.set = err, true
	}
	e.mu.Unlock()
}

// recordBroken records err when it says the network broke the connection
// (a reset, a timeout) rather than the broker closing it: a link that is
// cut a few times must not pass for a broker handing the session to
// another client, which ends a connection with a plain close.
func (e *ending) recordBroken(err error) {
	if brokenLink(err) {
		e.record(fmt.Errorf("link broken: %w", err))
	}
}

func brokenLink(err error) bool {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	var ne net.Error
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func (e *ending) get() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// handler receives every message on subscribed topics, in arrival order.
type handler func(m inbound)

// creds are the username and password of one connection: a preset's
// password is a token made afresh for each.
type creds struct{ username, password string }

func dial(ctx context.Context, c *Config, clientID string, cr creds, h handler) (conn, error) {
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if c.Version == "3.1.1" {
		return dial311(ctx, c, clientID, cr, tc, h)
	}
	return dial5(ctx, c, clientID, cr, tc, h)
}

func hostPort(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

// --- MQTT 5 (eclipse/paho.golang) ---

type conn5 struct {
	cl      *paho5.Client
	lost    chan struct{}
	session *trackingSession
	why     ending
	// backfill is the mark of the batch being sent (sends are serialised
	// by the sink): its messages carry the user property ferry-backfill.
	backfill bool
}

// backfillMarker is a connection that can tell a consumer a batch is
// backfill (bus.Batch.Backfill). MQTT 3.1.1 has no properties to say it in.
type backfillMarker interface{ markBackfill(on bool) }

func (k *conn5) markBackfill(on bool) { k.backfill = on }

func dial5(ctx context.Context, c *Config, clientID string, cr creds, tc *tls.Config, h handler) (conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.ConnectTimeout.D())
	defer cancel()
	nc, err := dialLink(ctx, c, tc)
	if err != nil {
		return nil, err
	}
	k := &conn5{lost: make(chan struct{})}
	var once bool
	lost := func() {
		if !once {
			once = true
			close(k.lost)
		}
	}
	lostCh := make(chan struct{}, 1)
	var onPublish []func(paho5.PublishReceived) (bool, error)
	if h != nil {
		onPublish = append(onPublish, func(pr paho5.PublishReceived) (bool, error) {
			m := inbound{topic: pr.Packet.Topic, payload: pr.Packet.Payload}
			if pp := pr.Packet.Properties; pp != nil {
				m.responseTopic, m.correlation = pp.ResponseTopic, pp.CorrelationData
			}
			h(m)
			return true, nil
		})
	}
	k.session = &trackingSession{SessionManager: state.New(noCopies{}, memstore.New()), why: &k.why}
	k.cl = paho5.NewClient(paho5.ClientConfig{
		Conn:              packetWriter(nc),
		Session:           k.session,
		OnPublishReceived: onPublish,
		OnClientError: func(err error) {
			k.why.recordBroken(err)
			signal(lostCh)
		},
		OnServerDisconnect: func(*paho5.Disconnect) { signal(lostCh) },
	})
	cp := &paho5.Connect{ClientID: clientID, KeepAlive: uint16(c.KeepAlive.D().Seconds()), CleanStart: true}
	if cr.username != "" {
		cp.Username, cp.UsernameFlag = cr.username, true
	}
	if cr.password != "" {
		cp.Password, cp.PasswordFlag = []byte(cr.password), true
	}
	ack, err := k.cl.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		_ = k.session.Close()
		if ack != nil && ack.ReasonCode != 0 {
			return nil, fmt.Errorf("broker refused the connection: reason %d %s", ack.ReasonCode, ack.Properties.ReasonString)
		}
		return nil, err
	}
	go func() {
		select {
		case <-lostCh:
		case <-k.cl.Done():
		}
		lost()
	}()
	return k, nil
}

// packetWriter makes nc safe for paho's concurrent writers. paho writes a
// packet as several buffers and, besides the sender, writes from its own
// goroutines (the PINGREQ it sends at once after CONNACK and every
// keep-alive, PUBACKs for what arrives); it holds a lock around each
// packet only when the connection offers one. A TCP connection writes the
// buffers with one writev under its own lock, so its packets cannot mix;
// TLS writes them one record each, so a PINGREQ could land inside a
// PUBLISH, which the broker refuses as malformed and answers by closing
// the connection (seen under load: "malformed packet: topic").
func packetWriter(nc net.Conn) net.Conn {
	if _, ok := nc.(*net.TCPConn); ok {
		return nc
	}
	return packets.NewThreadSafeConn(nc)
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (k *conn5) send(topic string, payload []byte, pp props) (func(context.Context) error, error) {
	p := &paho5.Publish{QoS: 1, Topic: topic, Payload: payload, Properties: &paho5.PublishProperties{
		ContentType: pp.contentType, CorrelationData: pp.correlation,
	}}
	if pp.schema != "" {
		p.Properties.User = append(p.Properties.User, paho5.UserProperty{Key: "ferry-schema", Value: pp.schema})
	}
	if pp.encoding != "" {
		// The content type stays the payload's own; the encoding says how
		// to get it back, as HTTP's Content-Encoding does.
		p.Properties.User = append(p.Properties.User, paho5.UserProperty{Key: "content-encoding", Value: pp.encoding})
	}
	if k.backfill {
		p.Properties.User = append(p.Properties.User, paho5.UserProperty{Key: "ferry-backfill", Value: "true"})
	}
	done := make(chan packets.ControlPacket, 1)
	k.session.next = done
	_, err := k.cl.PublishWithOptions(context.Background(), p, paho5.PublishOptions{Method: paho5.PublishMethod_AsyncSend})
	k.session.next = nil
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		select {
		case resp := <-done:
			if resp.Type == 0 {
				return errors.New("connection closed before PUBACK")
			}
			if pa, ok := resp.Content.(*packets.Puback); ok && pa.ReasonCode >= 0x80 {
				return fmt.Errorf("broker rejected the publish: reason 0x%02x: %w", pa.ReasonCode, errRejected)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-k.lost:
			return lostBeforeAck(k.why.get())
		}
	}, nil
}

// noCopies is the client side of the MQTT 5 session store, keeping
// nothing. paho's in-memory store serialises every PUBLISH into a buffer of
// its own so it can resend it on a resumed session; ferry's sessions never
// resume (clean start, a new store per connection), and a publish that a
// lost connection did not acknowledge is sent again by the outlet, so that
// copy (a third of what the uplink allocated) would never be read.
type noCopies struct{}

func (noCopies) Put(uint16, byte, io.WriterTo) error { return nil }
func (noCopies) Get(id uint16) (io.ReadCloser, error) {
	return nil, fmt.Errorf("packet %d: no copy is kept (sessions never resume)", id)
}
func (noCopies) Delete(uint16) error     { return nil }
func (noCopies) Quarantine(uint16) error { return nil }
func (noCopies) List() ([]uint16, error) { return nil, nil }
func (noCopies) Reset() error            { return nil }

// lostBeforeAck says a publish's connection ended before its PUBACK, and
// why when the connection knows.
func lostBeforeAck(why error) error {
	if why != nil {
		return fmt.Errorf("connection lost before PUBACK: %w", why)
	}
	return errors.New("connection lost before PUBACK")
}

// trackingSession wraps paho's session store to learn when each publish is
// acknowledged. paho's asynchronous publish returns once the packet is
// written and offers no completion; the session is told of the PUBACK, so
// the publish registers its channel here just before the call (sends are
// serialised, so "next" is always the caller's).
type trackingSession struct {
	session.SessionManager
	next chan packets.ControlPacket
	why  *ending
}

// ConnectionLost learns the broker's DISCONNECT reason. paho calls it with
// the packet before it tears the connection down, so the reason is recorded
// before done is closed; OnServerDisconnect would race with that.
func (s *trackingSession) ConnectionLost(dp *packets.Disconnect) error {
	if dp != nil {
		d := &disconnectError{code: dp.ReasonCode}
		if dp.Properties != nil {
			d.reason = dp.Properties.ReasonString
		}
		s.why.record(d)
	}
	return s.SessionManager.ConnectionLost(dp)
}

// The session is handed the publish's own channel in place of paho's: with
// PublishMethod_AsyncSend nobody reads paho's, so there is nothing to relay
// to, and no goroutine is left waiting when the connection ends. (A relay
// goroutine per publish leaked: paho's in-memory state forgets in-flight
// publishes on a lost connection without answering them, issue 13.) The
// channel has room for the one answer the session ever sends, so the
// session never blocks on it; wait gives up on the connection's end instead.
func (s *trackingSession) AddToSession(ctx context.Context, p session.Packet, resp chan<- packets.ControlPacket) error {
	if p.Type() != packets.PUBLISH || s.next == nil {
		return s.SessionManager.AddToSession(ctx, p, resp)
	}
	return s.SessionManager.AddToSession(ctx, p, s.next)
}

func (k *conn5) subscribe(ctx context.Context, filter string, qos byte) error {
	ack, err := k.cl.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if err != nil {
		return err
	}
	if ack != nil && len(ack.Reasons) > 0 && ack.Reasons[0] >= 0x80 {
		return fmt.Errorf("broker refused the subscription to %s: reason 0x%02x", filter, ack.Reasons[0])
	}
	return nil
}

func (k *conn5) done() <-chan struct{} { return k.lost }

func (k *conn5) cause() error { return k.why.get() }

func (k *conn5) close() {
	k.why.record(errClosedHere)
	_ = k.cl.Disconnect(&paho5.Disconnect{ReasonCode: 0})
	_ = k.session.Close()
}

// errRejected marks a publish the broker refused (not authorised, too
// large): retrying it as it is would never succeed.
var errRejected = errors.New("rejected by the broker")

// --- MQTT 3.1.1 (eclipse/paho.mqtt.golang) ---

type conn311 struct {
	cl       paho311.Client
	lost     chan struct{}
	lostOnce sync.Once
	why      ending
}

// ended closes lost once: paho calls the connection-lost handler only for a
// connection it lost, not for one closed by Disconnect, so close ends it
// too, or the link would wait on a connection it closed.
func (k *conn311) ended() { k.lostOnce.Do(func() { close(k.lost) }) }

func dial311(ctx context.Context, c *Config, clientID string, cr creds, tc *tls.Config, h handler) (conn, error) {
	scheme := "tcp://"
	if tc != nil {
		scheme = "ssl://"
	}
	k := &conn311{lost: make(chan struct{})}
	opts := paho311.NewClientOptions().
		AddBroker(scheme + hostPort(c.URL)).
		SetCustomOpenConnectionFn(open311(ctx, c, tc)). // TCP_NODELAY and TLS as for MQTT 5
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false). // the connector owns reconnects, with back-off
		SetConnectRetry(false).
		SetKeepAlive(c.KeepAlive.D()).
		SetConnectTimeout(c.ConnectTimeout.D()).
		SetMaxResumePubInFlight(0).
		SetConnectionLostHandler(func(_ paho311.Client, err error) {
			k.why.recordBroken(err)
			k.ended()
		})
	if h != nil {
		opts.SetOrderMatters(true)
		opts.SetDefaultPublishHandler(func(_ paho311.Client, m paho311.Message) { h(inbound{topic: m.Topic(), payload: m.Payload()}) })
	}
	if cr.username != "" {
		opts.SetUsername(cr.username)
	}
	if cr.password != "" {
		opts.SetPassword(cr.password)
	}
	k.cl = paho311.NewClient(opts)
	tok := k.cl.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		k.cl.Disconnect(0)
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *conn311) send(topic string, payload []byte, _ props) (func(context.Context) error, error) {
	// MQTT 3.1.1 has no properties: the payload says what it is (an Avro
	// single-object payload starts with C3 01 and the schema fingerprint;
	// JSON starts with '{' or, as json-array, '['). paho queues publishes
	// in call order.
	tok := k.cl.Publish(topic, 1, false, payload)
	return func(ctx context.Context) error {
		select {
		case <-tok.Done():
			return tok.Error()
		case <-ctx.Done():
			return ctx.Err()
		case <-k.lost:
			return lostBeforeAck(k.why.get())
		}
	}, nil
}

func (k *conn311) subscribe(ctx context.Context, filter string, qos byte) error {
	tok := k.cl.Subscribe(filter, qos, nil)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return err
	}
	if st, ok := tok.(*paho311.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				return fmt.Errorf("broker refused the subscription to %s", filter)
			}
		}
	}
	return nil
}

func (k *conn311) done() <-chan struct{} { return k.lost }

// cause is never a DISCONNECT: an MQTT 3.1.1 broker just closes.
func (k *conn311) cause() error { return k.why.get() }

func (k *conn311) close() {
	k.why.record(errClosedHere)
	k.cl.Disconnect(250)
	k.ended()
}
