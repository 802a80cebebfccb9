package sparkplug_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"google.golang.org/protobuf/proto"

	_ "github.com/ferry-gateway/ferry/connectors/all"
	"github.com/ferry-gateway/ferry/connectors/sparkplug"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/router"
)

// brokers are the two MQTT servers every scenario runs against: Debian's
// mosquitto, and ferry's own embedded broker (mochi) run in a pipeline of
// its own, so the ferry under test can be stopped or killed without it.
var brokers = []struct {
	name  string
	start func(t *testing.T) string
}{
	{"mosquitto", func(t *testing.T) string { return testbroker.Mosquitto(t) }},
	{"embedded", embeddedBroker},
}

func embeddedBroker(t *testing.T) string {
	addr := freeAddr(t)
	p := pipeline(t, fmt.Sprintf(`
data_dir: %s
connectors:
  broker:
    type: localbroker
    listeners: {tcp: %s}
    allow_anonymous: true
`, t.TempDir(), addr))
	t.Cleanup(func() { stop(t, p) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("embedded broker on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a listener that announces nothing
	}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func pipeline(t testing.TB, yaml string) *router.Pipeline {
	t.Helper()
	cfg, err := router.Load("test.yaml", []byte(yaml), conf.Resolver{})
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	p, err := router.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}

func stop(t testing.TB, p *router.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// seen is one Sparkplug message an observer received.
type seen struct {
	topic sparkplug.Topic
	p     *spb.Payload
	raw   []byte
	qos   byte
	at    time.Time
}

func (s seen) String() string {
	return fmt.Sprintf("%s/%s/%s seq=%d metrics=%d", s.topic.Verb, s.topic.Node, s.topic.Device, s.p.GetSeq(), len(s.p.GetMetrics()))
}

// observer is a plain MQTT client that records every Sparkplug message in
// arrival order; tests read them in order with next.
type observer struct {
	cl   paho.Client
	mu   sync.Mutex
	msgs []seen
	more chan struct{}
	pos  int
}

func observe(t *testing.T, addr, filter string) *observer {
	t.Helper()
	o := &observer{more: make(chan struct{}, 1)}
	o.cl = paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).
		SetClientID(fmt.Sprintf("observer-%d", time.Now().UnixNano())).SetOrderMatters(true).SetCleanSession(true))
	if tok := o.cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer connect: %v", tok.Error())
	}
	t.Cleanup(func() { o.cl.Disconnect(0) })
	tok := o.cl.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		tp, err := sparkplug.ParseTopic(m.Topic())
		if err != nil || tp.Verb == sparkplug.STATE {
			return
		}
		p, err := sparkplug.Decode(m.Payload())
		if err != nil {
			t.Errorf("%s: %v", m.Topic(), err)
			return
		}
		o.mu.Lock()
		o.msgs = append(o.msgs, seen{topic: tp, p: p, raw: m.Payload(), qos: m.Qos(), at: time.Now()})
		o.mu.Unlock()
		select {
		case o.more <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("observer subscribe: %v", tok.Error())
	}
	return o
}

// next returns the next message (after the last one next returned) that
// matches, failing the test after within.
func (o *observer) next(t *testing.T, within time.Duration, what string, match func(seen) bool) seen {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		o.mu.Lock()
		for o.pos < len(o.msgs) {
			m := o.msgs[o.pos]
			o.pos++
			if match(m) {
				o.mu.Unlock()
				return m
			}
		}
		o.mu.Unlock()
		select {
		case <-o.more:
		case <-deadline.C:
			o.mu.Lock()
			defer o.mu.Unlock()
			var last []string
			for _, m := range o.msgs[max(0, len(o.msgs)-8):] {
				last = append(last, m.String())
			}
			t.Fatalf("after %v: no %s; %d messages, the last: %s", within, what, len(o.msgs), strings.Join(last, "; "))
		}
	}
}

// since returns the messages received from index i on.
func (o *observer) since(i int) []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]seen(nil), o.msgs[i:]...)
}

func (o *observer) mark() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pos
}

func verb(v string) func(seen) bool { return func(s seen) bool { return s.topic.Verb == v } }

func (o *observer) publish(t *testing.T, topic string, qos byte, retain bool, payload []byte) {
	t.Helper()
	if tok := o.cl.Publish(topic, qos, retain, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func metricByName(p *spb.Payload, name string) *spb.Payload_Metric {
	for _, m := range p.GetMetrics() {
		if m.GetName() == name {
			return m
		}
	}
	return nil
}

func mustMarshal(t *testing.T, p *spb.Payload) []byte {
	t.Helper()
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func nowMS() *uint64 { return proto.Uint64(uint64(time.Now().UnixMilli())) }

// waitEvent waits for a pipeline event whose error holds every one of
// words.
func waitEvent(t *testing.T, p *router.Pipeline, words ...string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, ev := range p.Events(0) {
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(ev.Error, w)
			}
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no event with %q: %+v", words, p.Events(0))
		}
		time.Sleep(20 * time.Millisecond) // events have Notify, but a poll keeps this short
	}
}
