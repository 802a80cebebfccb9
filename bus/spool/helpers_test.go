package spool

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
)

// permutations are the settings every spool test that is about storage
// runs under: encryption off and on (like nats-server's filestore
// permutations).
var permutations = []struct {
	name    string
	encrypt bool
}{{"plain", false}, {"encrypted", true}}

// writeKey writes a random hex key file and returns its path.
func writeKey(t testing.TB, dir string) string {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	p := filepath.Join(dir, "key")
	if err := os.WriteFile(p, []byte(hex.EncodeToString(k)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testConfig is a small spool in a fresh directory.
func testConfig(t testing.TB, encrypt bool) Config {
	t.Helper()
	base := t.TempDir()
	cfg := Config{Dir: filepath.Join(base, "spool"), Name: "test", SegmentSize: 64 << 10, Quota: 64 << 20}
	if encrypt {
		cfg.KeyFile = writeKey(t, base)
	}
	return cfg
}

func open(t testing.TB, cfg Config) *Spool {
	t.Helper()
	s, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// msg makes a message with a numbered payload and the given metadata pairs.
func msg(i int, kv ...string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf("m%06d", i)))
	for j := 0; j+1 < len(kv); j += 2 {
		m.Metadata.Set(kv[j], kv[j+1])
	}
	return m
}

// batchMsg is a realistic bus message: an Avro batch of n records.
func batchMsg(n int, seq uint64) *message.Message {
	b := &bus.Batch{Records: make([]bus.Record, n)}
	now := time.Now().UnixNano()
	for i := range b.Records {
		b.Records[i] = bus.Record{
			Source: "plc1", Device: "press-01", Tag: "line1/temperature",
			Value: bus.Double(20 + float64(i%100)*0.137), SourceTime: now - 3e6, IngestTime: now + int64(i)*10_000,
			Unit: "°C", Seq: seq + uint64(i),
		}
	}
	return bus.NewMessage(b)
}

func publish(t testing.TB, s *Spool, topic string, msgs ...*message.Message) {
	t.Helper()
	if err := s.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
}

// receive reads n messages, acking each, within d.
func receive(t testing.TB, ch <-chan *message.Message, n int, d time.Duration) []*message.Message {
	t.Helper()
	var got []*message.Message
	deadline := time.After(d)
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d messages", len(got), n)
			}
			got = append(got, m)
			m.Ack()
		case <-deadline:
			t.Fatalf("received %d of %d messages within %s", len(got), n, d)
		}
	}
	return got
}

// none checks that nothing arrives for a short while. The wait is a bound
// on silence, not a wait for an event.
func none(t testing.TB, ch <-chan *message.Message) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %s %q", m.UUID, m.Payload)
	case <-time.After(50 * time.Millisecond):
	}
}

func payloads(ms []*message.Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m.Payload)
	}
	return out
}

func subscribe(t testing.TB, s *Spool, topic string) <-chan *message.Message {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := s.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
