package bus

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Metadata keys of a bus message. Together they let any consumer, in or out
// of the process, tell what a payload is without asking.
const (
	MetaContentType = "content-type"
	MetaSchema      = "ferry-schema" // FingerprintHex of the payload's schema
)

// avgRecordLen sizes a message's buffer so that a typical batch is encoded
// without growing it.
const avgRecordLen = 64

// NewMessage encodes the batch into a new watermill message with a fresh
// UUID, the Avro content type and the schema fingerprint.
func NewMessage(b *Batch) *message.Message {
	payload := b.AppendAvro(make([]byte, 0, soeHeaderLen+16+avgRecordLen*len(b.Records)))
	m := message.NewMessage(watermill.NewUUID(), payload)
	m.Metadata.Set(MetaContentType, ContentTypeAvro)
	m.Metadata.Set(MetaSchema, fingerprintHex)
	return m
}

// DecodeMessage decodes a message made by NewMessage into b (see Decode).
// A message of another content type, or whose ferry-schema metadata names
// another schema, is refused with ErrSchemaMismatch; the payload's own
// header is checked as well.
func (d *Decoder) DecodeMessage(m *message.Message, b *Batch) error {
	if ct := m.Metadata.Get(MetaContentType); ct != ContentTypeAvro {
		return fmt.Errorf("bus: message %s has content type %q, want %q: %w", m.UUID, ct, ContentTypeAvro, ErrSchemaMismatch)
	}
	if fp := m.Metadata.Get(MetaSchema); fp != "" && fp != fingerprintHex {
		return fmt.Errorf("bus: message %s carries schema %s, this build reads %s: %w", m.UUID, fp, fingerprintHex, ErrSchemaMismatch)
	}
	if err := d.decode(m.Payload, b); err != nil {
		return fmt.Errorf("bus: message %s: %w", m.UUID, err)
	}
	return nil
}
