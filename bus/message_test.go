package bus

import (
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
)

func TestMessageRoundTrip(t *testing.T) {
	in := variedBatch(50)
	m := NewMessage(in)
	if m.UUID == "" {
		t.Error("message has no UUID")
	}
	if got := m.Metadata.Get(MetaContentType); got != ContentTypeAvro {
		t.Errorf("%s = %q", MetaContentType, got)
	}
	if got := m.Metadata.Get(MetaSchema); got != FingerprintHex() {
		t.Errorf("%s = %q", MetaSchema, got)
	}
	var d Decoder
	var out Batch
	if err := d.DecodeMessage(m, &out); err != nil {
		t.Fatal(err)
	}
	if diff := diffRecords(out.Records, onWireAll(in.Records)); diff != "" {
		t.Error(diff)
	}
}

func TestDecodeMessageRefuses(t *testing.T) {
	good := NewMessage(typicalBatch(3))
	for _, c := range []struct {
		name     string
		edit     func(m *message.Message)
		err      error
		mentions string
	}{
		{"json content type", func(m *message.Message) { m.Metadata.Set(MetaContentType, ContentTypeJSON) }, ErrSchemaMismatch, `"application/x-ndjson"`},
		{"no content type", func(m *message.Message) { delete(m.Metadata, MetaContentType) }, ErrSchemaMismatch, `content type ""`},
		{"other schema", func(m *message.Message) { m.Metadata.Set(MetaSchema, "0123456789abcdef") }, ErrSchemaMismatch, "0123456789abcdef"},
		{"corrupt payload", func(m *message.Message) { m.Payload = m.Payload[:len(m.Payload)-1] }, ErrMalformed, "decode"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := good.Copy()
			c.edit(m)
			var d Decoder
			err := d.DecodeMessage(m, &Batch{})
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if !strings.Contains(err.Error(), c.mentions) || !strings.Contains(err.Error(), m.UUID) {
				t.Errorf("error %q should name %s and the message", err, c.mentions)
			}
		})
	}
}
