package localbroker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

type message struct {
	topic   string
	payload []byte
}

// receive subscribes the broker's inline client to filter and returns the
// first n messages published there.
func receive(t *testing.T, b *Broker, filter string, n int, publish func()) []message {
	t.Helper()
	ch := make(chan message, 64)
	if err := b.srv.Subscribe(filter, 99, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		ch <- message{pk.TopicName, bytes.Clone(pk.Payload)}
	}); err != nil {
		t.Fatal(err)
	}
	publish()
	var out []message
	deadline := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case m := <-ch:
			out = append(out, m)
		case <-deadline:
			t.Fatalf("%d of %d messages", len(out), n)
		}
	}
	select {
	case m := <-ch:
		t.Fatalf("more messages than %d: %s %s", n, m.topic, m.payload)
	case <-time.After(50 * time.Millisecond):
	}
	return out
}

// oneValue is what a consumer such as Node-RED's JSON node asks of a
// payload: exactly one JSON value, then nothing.
func oneValue(t *testing.T, p []byte, into any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(p))
	if err := d.Decode(into); err != nil {
		t.Fatalf("payload %.120q: %v", p, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("payload %.120q holds more than one JSON value (%v)", p, err)
	}
}

func TestPayloadShapes(t *testing.T) {
	batch := records(3)
	t.Run("json", func(t *testing.T) {
		b, _, _ := start(t, func(c *Config) {
			c.Retain = false
			c.Fields, c.TimeFormat = []string{"tag", "value", "ts"}, "unix_us"
		})
		msgs := receive(t, b, "plant/#", 3, func() {
			if err := b.Write(t.Context(), batch); err != nil {
				t.Fatal(err)
			}
		})
		for i, m := range msgs {
			r := &batch.Records[i]
			var got map[string]json.RawMessage
			oneValue(t, m.payload, &got)
			if m.topic != "plant/press-1/"+r.Tag || len(got) != 3 || string(got["ts"]) != strconv.FormatInt(r.SourceTime/1e3, 10) {
				t.Errorf("%s: %s, want tag, value and ts in µs", m.topic, m.payload)
			}
		}
	})
	for _, format := range []string{"json-array", "json-lines"} {
		t.Run(format, func(t *testing.T) {
			b, _, _ := start(t, func(c *Config) { c.Retain, c.Format, c.Topic = false, format, "{site}/{device}" })
			msgs := receive(t, b, "plant/#", 1, func() {
				if err := b.Write(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
			})
			var n int
			if format == "json-array" {
				var recs []map[string]any
				oneValue(t, msgs[0].payload, &recs)
				n = len(recs)
			} else {
				for line := range bytes.Lines(msgs[0].payload) {
					var r map[string]any
					oneValue(t, line, &r)
					n++
				}
			}
			if msgs[0].topic != "plant/press-1" || n != 3 {
				t.Fatalf("%s: %d records, want 3 on plant/press-1", msgs[0].topic, n)
			}
		})
	}
}
