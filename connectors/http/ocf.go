package http

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/ferry-gateway/ferry/bus"
)

// soeHeader is the length of the single-object encoding prefix (C3 01 and
// the 8-byte fingerprint) that bus.Batch.AppendAvro writes before the body.
const soeHeader = 10

// appendOCF writes b as an Avro object container file holding one Batch
// object: magic, a header map with the schema and the null codec, a sync
// marker, and one block. Any Avro library reads it with no other input, which
// is why HTTP consumers get a container file rather than a bare payload.
func appendOCF(dst []byte, b *bus.Batch) []byte {
	var sync [16]byte
	_, _ = rand.Read(sync[:])
	dst = append(dst, 'O', 'b', 'j', 1)
	dst = appendLong(dst, 2) // two metadata entries
	dst = appendString(dst, "avro.schema")
	dst = appendString(dst, bus.Schema())
	dst = appendString(dst, "avro.codec")
	dst = appendString(dst, "null")
	dst = appendLong(dst, 0)
	dst = append(dst, sync[:]...)
	body := b.AppendAvro(nil)[soeHeader:]
	dst = appendLong(dst, 1)
	dst = appendLong(dst, int64(len(body)))
	dst = append(dst, body...)
	return append(dst, sync[:]...)
}

func appendLong(dst []byte, v int64) []byte {
	return binary.AppendUvarint(dst, uint64(v<<1)^uint64(v>>63))
}

func appendString(dst []byte, s string) []byte {
	dst = appendLong(dst, int64(len(s)))
	return append(dst, s...)
}
