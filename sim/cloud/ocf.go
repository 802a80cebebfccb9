package cloud

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/ferry-gateway/ferry/bus"
)

var ocfMagic = []byte{'O', 'b', 'j', 1}

// ocfBatches reads an Avro object container file of ferry batches (null
// codec) and returns each object framed as a single-object payload, so the
// bus decoder can read it.
func ocfBatches(p []byte) ([][]byte, error) {
	if !bytes.HasPrefix(p, ocfMagic) {
		return nil, errors.New("not an object container file")
	}
	r := reader{p: p[len(ocfMagic):]}
	meta := map[string]string{}
	for {
		n := r.long()
		if n == 0 || r.err != nil {
			break
		}
		if n < 0 {
			n = -n
			r.long() // block size in bytes
		}
		for ; n > 0 && r.err == nil; n-- {
			k := r.str()
			meta[k] = r.str()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if c := meta["avro.codec"]; c != "" && c != "null" {
		return nil, fmt.Errorf("codec %q not supported", c)
	}
	if meta["avro.schema"] == "" {
		return nil, errors.New("no avro.schema in header")
	}
	sync := r.bytes(16)
	var prefix [10]byte
	prefix[0], prefix[1] = 0xC3, 0x01
	binary.LittleEndian.PutUint64(prefix[2:], bus.Fingerprint())
	var out [][]byte
	for r.err == nil && len(r.p) > 0 {
		count, size := r.long(), r.long()
		data := r.bytes(int(size))
		if !bytes.Equal(r.bytes(16), sync) && r.err == nil {
			return nil, errors.New("sync marker mismatch")
		}
		if count != 1 {
			return nil, fmt.Errorf("block of %d objects: the simulator reads one batch per block", count)
		}
		out = append(out, append(prefix[:], data...))
	}
	return out, r.err
}

type reader struct {
	p   []byte
	err error
}

func (r *reader) long() int64 {
	if r.err != nil {
		return 0
	}
	u, n := binary.Uvarint(r.p)
	if n <= 0 {
		r.err = errors.New("truncated long")
		return 0
	}
	r.p = r.p[n:]
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.p) {
		r.err = errors.New("truncated")
		return nil
	}
	b := r.p[:n]
	r.p = r.p[n:]
	return b
}

func (r *reader) str() string { return string(r.bytes(int(r.long()))) }
