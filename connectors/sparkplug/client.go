package sparkplug

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// message is one PUBLISH received on a subscription.
type message struct {
	topic   string
	payload []byte
}

// will is the message the broker publishes when the connection dies.
type will struct {
	topic   string
	payload []byte
	retain  bool
}

// client is one MQTT 3.1.1 session with a clean session, as Sparkplug
// requires of edge nodes and hosts (tck-id-message-flow-phid-sparkplug-clean-session-311).
// The connector owns reconnects; a client is used for one connection only.
type client struct {
	cl         paho.Client
	lost       chan struct{}
	once       sync.Once
	ackTimeout time.Duration
}

// dial connects with w as the will. Received messages go to in, in
// arrival order; a full in holds the connection's reader back rather than
// dropping a message.
func dial(ctx context.Context, l *Link, clientID string, w will, in chan<- message) (*client, error) {
	tc, err := l.tlsConfig()
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(l.URL)
	scheme := "tcp://"
	if tc != nil {
		scheme = "ssl://"
	}
	k := &client{lost: make(chan struct{}), ackTimeout: l.AckTimeout.D()}
	opts := paho.NewClientOptions().
		AddBroker(scheme + u.Host).
		SetClientID(clientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(l.KeepAlive.D()).
		SetConnectTimeout(l.ConnectTimeout.D()).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(paho.Client, error) { k.ended() }).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) {
			select {
			case in <- message{m.Topic(), m.Payload()}:
			case <-k.lost:
			}
		})
	if w.topic != "" {
		opts.SetBinaryWill(w.topic, w.payload, 1, w.retain)
	}
	if tc != nil {
		opts.SetTLSConfig(tc)
	}
	if l.Username != "" {
		opts.SetUsername(l.Username)
	}
	if l.Password != "" {
		opts.SetPassword(l.Password)
	}
	k.cl = paho.NewClient(opts)
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

func (k *client) ended() { k.once.Do(func() { close(k.lost) }) }

// done is closed when the connection is gone.
func (k *client) done() <-chan struct{} { return k.lost }

// send queues a publish; paho writes them in call order.
func (k *client) send(topic string, qos byte, retain bool, payload []byte) paho.Token {
	return k.cl.Publish(topic, qos, retain, payload)
}

// errStuck marks a publish that did not complete within ack_timeout.
var errStuck = errors.New("no answer within ack_timeout: link treated as down")

// wait waits for tokens in order, up to ack_timeout from now.
func (k *client) wait(toks ...paho.Token) error {
	deadline := time.NewTimer(k.ackTimeout)
	defer deadline.Stop()
	for _, t := range toks {
		select {
		case <-t.Done():
			if err := t.Error(); err != nil {
				return err
			}
		case <-k.lost:
			return errors.New("connection lost")
		case <-deadline.C:
			return errStuck
		}
	}
	return nil
}

// publish sends one message and waits for it.
func (k *client) publish(topic string, qos byte, retain bool, payload []byte) error {
	if err := k.wait(k.send(topic, qos, retain, payload)); err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

func (k *client) subscribe(filter string, qos byte) error {
	tok := k.cl.Subscribe(filter, qos, nil)
	if err := k.wait(tok); err != nil {
		return fmt.Errorf("subscribe %s: %w", filter, err)
	}
	if st, ok := tok.(*paho.SubscribeToken); ok {
		for _, code := range st.Result() {
			if code >= 0x80 {
				return fmt.Errorf("broker refused the subscription to %s", filter)
			}
		}
	}
	return nil
}

// close disconnects cleanly (no will), waiting up to quiesce for what is
// in flight.
func (k *client) close(quiesce time.Duration) {
	k.cl.Disconnect(uint(quiesce / time.Millisecond))
	k.ended()
}

// failedToken is a publish that failed before it reached the client.
type failedToken struct {
	err  error
	done chan struct{}
}

func failed(err error) paho.Token {
	t := &failedToken{err: err, done: make(chan struct{})}
	close(t.done)
	return t
}

func (t *failedToken) Wait() bool                     { return true }
func (t *failedToken) WaitTimeout(time.Duration) bool { return true }
func (t *failedToken) Done() <-chan struct{}          { return t.done }
func (t *failedToken) Error() error                   { return t.err }
