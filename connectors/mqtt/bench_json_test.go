package mqtt

import (
	"context"
	"slices"
	"strconv"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/topics"
)

// captureConn is a connection that keeps nothing and acknowledges at once,
// so a benchmark times the sink's own work per batch: topics and encoding.
type captureConn struct {
	keep  bool
	msgs  []captured
	acked func(context.Context) error
}

type captured struct {
	topic, contentType string
	payload            []byte
	encoding           string
}

func (k *captureConn) send(topic string, payload []byte, pp props) (func(context.Context) error, error) {
	ct := pp.contentType
	if k.keep {
		k.msgs = append(k.msgs, captured{topic, ct, slices.Clone(payload), pp.encoding})
	}
	if k.acked == nil {
		k.acked = func(context.Context) error { return nil }
	}
	return k.acked, nil
}
func (k *captureConn) subscribe(context.Context, string, byte) error { return nil }
func (k *captureConn) done() <-chan struct{}                         { return nil }
func (k *captureConn) cause() error                                  { return nil }
func (k *captureConn) close()                                        {}

// pollOf is one Modbus poll of n holding registers.
func pollOf(n int) *bus.Batch {
	b := &bus.Batch{Records: make([]bus.Record, n)}
	for i := range b.Records {
		b.Records[i] = bus.Record{Source: "plc1", Device: "press-01", Tag: "hr/" + strconv.Itoa(40001+i),
			Value: bus.Double(20 + float64(i%100)*0.137), SourceTime: 1764000000123456000, IngestTime: 1764000000123636000,
			Seq: uint64(i)}
	}
	return b
}

// BenchmarkUplinkJSON is the uplink's part of the Modbus→MQTT JSON job of
// issue 14: one poll of 1,000 registers on the default topic
// ferry/{site}/{source}, JSON lines, handed to a connection that acks at
// once. It uses only what older commits have too, for a before/after run:
//
//	go test -run '^$' -bench UplinkJSON -benchmem -count 3 -cpu 1 ./connectors/mqtt/
func BenchmarkUplinkJSON(b *testing.B) {
	format := "json"
	if slices.Contains(Formats, "json-lines") {
		format = "json-lines"
	}
	m := &MQTT{Config: Config{Topic: "ferry/{site}/{source}", Format: format}}
	m.SetDefaults()
	t, err := topics.Parse(m.Topic)
	if err != nil {
		b.Fatal(err)
	}
	m.topic, m.env = t, &connectors.Env{Site: "s1", Name: "uplink"}
	batch := pollOf(1000)
	c := &captureConn{}
	ctx := context.Background()
	for b.Loop() {
		wait, err := m.sendOn(c, batch)
		if err != nil {
			b.Fatal(err)
		}
		if err := wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch.Len()), "ns/record")
}
