package mqtt

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/topics"
	"github.com/ferry-gateway/ferry/internal/conf"
)

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

// sent runs one batch through a sink configured by mod and returns the
// messages it published.
func sent(t *testing.T, b *bus.Batch, mod func(*Config)) []captured {
	t.Helper()
	m := &MQTT{Config: Config{URL: "tcp://127.0.0.1:1"}}
	mod(&m.Config)
	m.SetDefaults()
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	tp, err := topics.Parse(m.Topic)
	if err != nil {
		t.Fatal(err)
	}
	m.topic, m.env = tp, &connectors.Env{Site: "s1", Name: "up"}
	c := &captureConn{keep: true}
	wait, err := m.sendOn(c, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	return c.msgs
}

type wireRecord struct {
	Source, Device, Tag string
	Value               any
	Seq                 uint64
	TS                  json.RawMessage `json:"ts"`
}

func TestPayloadShapes(t *testing.T) {
	b := batch(7, 6) // two devices, alternating
	t.Run("json-lines", func(t *testing.T) {
		msgs := sent(t, b, func(c *Config) { c.Format = "json-lines"; c.Topic = "ferry/{site}/{device}" })
		if len(msgs) != 2 {
			t.Fatalf("%d messages, want one per device topic", len(msgs))
		}
		for _, m := range msgs {
			if m.contentType != bus.ContentTypeJSON || !bytes.HasSuffix(m.payload, []byte("\n")) {
				t.Errorf("%s: content type %s, payload %.80q", m.topic, m.contentType, m.payload)
			}
			for line := range bytes.Lines(m.payload) {
				var r wireRecord
				oneValue(t, line, &r)
				if "ferry/s1/"+r.Device != m.topic {
					t.Errorf("record of %s on topic %s", r.Device, m.topic)
				}
			}
		}
	})
	t.Run("json-array", func(t *testing.T) {
		msgs := sent(t, b, func(c *Config) { c.Format = "json-array"; c.Topic = "ferry/{site}/{device}" })
		seqs := 0
		for _, m := range msgs {
			var recs []wireRecord
			oneValue(t, m.payload, &recs)
			if m.contentType != "application/json" || len(recs) != 3 {
				t.Errorf("%s: %s, %d records, want application/json and 3", m.topic, m.contentType, len(recs))
			}
			seqs += len(recs)
		}
		if len(msgs) != 2 || seqs != 6 {
			t.Fatalf("%d messages with %d records, want 2 with 6", len(msgs), seqs)
		}
	})
	t.Run("json", func(t *testing.T) {
		msgs := sent(t, b, func(c *Config) {
			c.Format, c.Topic = "json", "ferry/{device}/{tag}"
			c.Fields, c.TimeFormat = []string{"value", "ts", "seq"}, "unix_ms"
		})
		if len(msgs) != b.Len() {
			t.Fatalf("%d messages, want one per record (%d)", len(msgs), b.Len())
		}
		for i, m := range msgs {
			r := &b.Records[i]
			var got map[string]json.RawMessage
			oneValue(t, m.payload, &got)
			if len(got) != 3 || string(got["seq"]) != jsonNum(r.Seq) || string(got["ts"]) != jsonNum(uint64(r.SourceTime/1e6)) {
				t.Errorf("message %d: %s, want value, ts in ms and seq only", i, m.payload)
			}
			if m.topic != "ferry/"+r.Device+"/"+r.Tag || m.contentType != "application/json" {
				t.Errorf("message %d on %s as %s", i, m.topic, m.contentType)
			}
		}
	})
}

func jsonNum(u uint64) string { b, _ := json.Marshal(u); return string(b) }

// TestFormatRename: "json" meant JSON lines before issue 14. An old config
// (the default topic has no {tag}) is told what to write instead, at the
// line of its format.
func TestFormatRename(t *testing.T) {
	for _, c := range []struct {
		yaml, want string
	}{
		{"format: json\n", `f.yaml:3:9: connectors.up.format: json publishes one object per message, a message per record, and needs a topic per tag ({tag} in topic "ferry/{site}/{source}"); before, format json meant JSON lines: write json-lines to keep that`},
		{"format: json\ntopic: plant/{device}/{tag}\n", ""},
		{"format: json-lines\nfields: [value, tss, value]\ntime_format: iso\n", "f.yaml:4:17: connectors.up.fields[1]: \"tss\" is not a record field; fields are source, device, tag, value, type, quality, status, ts, ingest_ts, unit, seq, attrs\n" +
			"f.yaml:4:22: connectors.up.fields[2]: \"value\" is listed twice\n" +
			"f.yaml:5:14: connectors.up.time_format: \"iso\" is not one of rfc3339, unix_ms, unix_us"},
		{"format: avro\ntime_format: unix_ms\n", "f.yaml:4:14: connectors.up.time_format: applies to JSON formats only"},
	} {
		src, err := conf.Parse("f.yaml", []byte("type: mqtt\nurl: tcp://broker:1883\n"+c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		errs := connectors.Decode(src, src.Root, &MQTT{}, "connectors.up")
		switch {
		case c.want == "" && errs != nil:
			t.Errorf("%s: %v", c.yaml, errs)
		case c.want != "" && (errs == nil || !strings.HasPrefix(errs.Error(), c.want)):
			t.Errorf("%s:\n got  %v\n want %s", c.yaml, errs, c.want)
		}
	}
}
