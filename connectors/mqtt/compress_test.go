package mqtt

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/compress"
	"github.com/ferry-gateway/ferry/internal/testbroker"
)

// TestBytesPerRecord measures what a record costs on a metered link, per
// payload format and compression (payload bytes; MQTT adds a few bytes of
// header and the topic per message): ten polls of 50 registers of a
// device, 100 ms apart, the values a noisy random walk, so compression is
// not flattered by repeats. Every compressed payload decodes back to the
// same records.
//
//	go test -run BytesPerRecord -v ./connectors/mqtt/
func TestBytesPerRecord(t *testing.T) {
	const n = 500
	b := meteredBatch(n)
	t.Logf("%-10s %8s %8s %8s", "format", "none", "gzip", "zstd")
	for _, f := range []struct{ format, topic string }{
		{"avro", "ferry/{site}/{device}"},
		{"json-lines", "ferry/{site}/{device}"},
		{"json-array", "ferry/{site}/{device}"},
		{"json", "ferry/{site}/{device}/{tag}"},
	} {
		var plain int
		row := fmt.Sprintf("%-10s", f.format)
		for _, z := range []string{"none", "gzip", "zstd"} {
			msgs := sent(t, b, func(c *Config) { c.Format, c.Topic, c.Compress = f.format, f.topic, z })
			var wire, records int
			for _, m := range msgs {
				wire += len(m.payload)
				if want := strings.TrimPrefix(z, "none"); m.encoding != want {
					t.Fatalf("%s/%s: marked %q", f.format, z, m.encoding)
				}
				p, err := compress.Decode(m.encoding, m.payload)
				if err != nil {
					t.Fatalf("%s/%s: %v", f.format, z, err)
				}
				records += countRecords(t, f.format, p)
			}
			if records != n {
				t.Fatalf("%s/%s: %d records decoded, want %d", f.format, z, records, n)
			}
			if z == "none" {
				plain = wire
			} else if f.format != "json" && wire*2 > plain {
				// A message per record is too small to gain much; a
				// batch must at least halve.
				t.Errorf("%s/%s: %d bytes, plain %d", f.format, z, wire, plain)
			}
			row += fmt.Sprintf(" %8.1f", float64(wire)/n)
		}
		t.Log(row)
	}
}

// meteredBatch is n records: polls of 50 tags, 100 ms apart, values a
// random walk with three decimals (deterministic).
func meteredBatch(n int) *bus.Batch {
	rng := rand.New(rand.NewPCG(1, 2))
	b := &bus.Batch{Records: make([]bus.Record, n)}
	vals := make([]float64, 50)
	for i := range vals {
		vals[i] = 20 + rng.Float64()*50
	}
	t0 := int64(1764000000123456000)
	for i := range b.Records {
		tag := i % 50
		vals[tag] += rng.NormFloat64() * 0.4
		ts := t0 + int64(i/50)*100e6
		b.Records[i] = bus.Record{Source: "plc1", Device: "press-01", Tag: "hr/" + strconv.Itoa(40001+tag),
			Value: bus.Double(math.Round(vals[tag]*1000) / 1000), SourceTime: ts, IngestTime: ts + 180e3 + int64(rng.IntN(50e3)),
			Seq: uint64(i + 1)}
	}
	return b
}

func countRecords(t *testing.T, format string, p []byte) int {
	t.Helper()
	switch format {
	case "avro":
		var b bus.Batch
		if err := bus.DecodeBatch(p, &b); err != nil {
			t.Fatal(err)
		}
		return len(b.Records)
	case "json-lines":
		return strings.Count(string(p), "\n")
	case "json-array":
		var recs []wireRecord
		oneValue(t, p, &recs)
		return len(recs)
	}
	var r wireRecord
	oneValue(t, p, &r)
	return 1
}

// TestCompressOverMosquitto: a zstd batch through a real broker arrives
// marked with the content-encoding user property, and decodes.
func TestCompressOverMosquitto(t *testing.T) {
	addr := testbroker.Mosquitto(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, got := subscribe5(ctx, t, addr, "consumer", "z/#")
	m := newSink(t, "tcp://"+addr, "5", func(c *Config) { c.Compress, c.Topic = "zstd", "z/{site}" })
	startSink(t, m)
	if err := m.Write(ctx, batch(1, 100)); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p.Properties.User.Get("content-encoding") != "zstd" || p.Properties.ContentType != bus.ContentTypeAvro ||
			p.Properties.User.Get("ferry-schema") != bus.FingerprintHex() {
			t.Fatalf("properties %+v", p.Properties)
		}
		raw, err := compress.Decode("zstd", p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var b bus.Batch
		if err := bus.DecodeBatch(raw, &b); err != nil || len(b.Records) != 100 {
			t.Fatalf("%d records, %v", len(b.Records), err)
		}
	case <-ctx.Done():
		t.Fatal("nothing arrived")
	}
}

// subscribe5 connects an MQTT 5 client to addr as id, subscribes to filter
// at QoS 1 and returns the client and what it receives.
func subscribe5(ctx context.Context, t *testing.T, addr, id, filter string) (*paho5.Client, <-chan *paho5.Publish) {
	t.Helper()
	got := make(chan *paho5.Publish, 1)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cl := paho5.NewClient(paho5.ClientConfig{Conn: nc, OnPublishReceived: []func(paho5.PublishReceived) (bool, error){
		func(pr paho5.PublishReceived) (bool, error) { got <- pr.Packet; return true, nil },
	}})
	if _, err := cl.Connect(ctx, &paho5.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Disconnect(&paho5.Disconnect{}) })
	if _, err := cl.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	return cl, got
}
