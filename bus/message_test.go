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

// TestLend: a lent message carries the batch itself to Batch, a copy of
// its records to DecodeMessage, and nothing once it is returned; only the
// in-process bus is one to lend on.
func TestLend(t *testing.T) {
	in := variedBatch(20)
	m := Lend(in)
	if len(m.Payload) != 0 || m.Metadata.Get(MetaContentType) != ContentTypeLent {
		t.Fatalf("lent message: payload %d bytes, content type %q", len(m.Payload), m.Metadata.Get(MetaContentType))
	}
	var d Decoder
	got, err := d.Batch(m.Copy(), &Batch{}) // subscribers get copies of the message
	if err != nil || got != in {
		t.Fatalf("Batch: %p, %v; want the lent batch %p", got, err, in)
	}
	var out Batch
	if err := d.DecodeMessage(m, &out); err != nil {
		t.Fatal(err)
	}
	if diff := diffRecords(out.Records, in.Records); diff != "" || &out.Records[0] == &in.Records[0] {
		t.Errorf("DecodeMessage of a lent batch: want a copy of its records; %s", diff)
	}
	Return(m)
	if _, err := d.Batch(m, &Batch{}); !errors.Is(err, errNotLent) || !strings.Contains(err.Error(), m.UUID) {
		t.Errorf("after Return: %v", err)
	}
	mem := NewMemory(nil)
	defer mem.Close()
	if !InProcess(mem) || InProcess(struct{ PubSub }{mem}) {
		t.Error("InProcess must hold for the in-process bus, and only for it")
	}
}

// A subscriber of the in-process bus refuses a message with Refuse: its
// Publish returns the reason, once; a message acknowledged as usual
// publishes without error.
func TestRefuse(t *testing.T) {
	mem := NewMemory(nil)
	defer mem.Close()
	msgs, err := mem.Subscribe(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		n := 0
		for m := range msgs {
			if n++; n == 1 {
				Refuse(m, ErrStopping)
				continue
			}
			m.Ack()
		}
	}()
	if err := mem.Publish("t", NewMessage(&Batch{})); !errors.Is(err, ErrStopping) {
		t.Errorf("refused publish returned %v, want ErrStopping", err)
	}
	if err := mem.Publish("t", NewMessage(&Batch{})); err != nil {
		t.Errorf("acknowledged publish returned %v", err)
	}
}
