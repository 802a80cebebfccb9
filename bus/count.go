package bus

import (
	"encoding/binary"
	"fmt"
)

// CountRecords returns how many records an encoded batch (see AppendAvro)
// holds without decoding it: it checks the single-object header, then walks
// the records array, skipping blocks whose byte size is given and stepping
// over each record's fields without building strings, maps or Values. It is
// what the spool uses to count the records of an entry it stores, drops or
// expires. Errors wrap ErrSchemaMismatch or ErrMalformed like Decode's.
func CountRecords(p []byte) (int, error) {
	if len(p) >= 2 && (p[0] != 0xC3 || p[1] != 0x01) {
		return 0, fmt.Errorf("bus: count: payload starts with %#02x %#02x, not the avro single-object marker 0xc3 0x01: %w", p[0], p[1], ErrSchemaMismatch)
	}
	if len(p) < soeHeaderLen {
		return 0, fmt.Errorf("bus: count: %d bytes is shorter than the %d-byte header: %w", len(p), soeHeaderLen, ErrMalformed)
	}
	if fp := binary.LittleEndian.Uint64(p[2:]); fp != fingerprint {
		return 0, fmt.Errorf("bus: count: payload carries schema %016x, this build reads %s: %w", fp, fingerprintHex, ErrSchemaMismatch)
	}
	r := &reader{buf: p, pos: soeHeaderLen}
	if _, err := r.bytes(); err != nil { // source
		return 0, batchErr("source", r, err)
	}
	if _, err := r.long(); err != nil {
		return 0, batchErr("base_time", r, err)
	}
	if _, err := r.long(); err != nil {
		return 0, batchErr("seq_base", r, err)
	}
	n := 0
	for {
		count, size, err := r.blockHeader()
		if err != nil {
			return 0, batchErr("records", r, err)
		}
		if count == 0 {
			break
		}
		if count > r.left()/minRecordLen {
			return 0, batchErr("records", r, fmt.Errorf("block of %d records cannot fit in %d bytes: %w", count, r.left(), ErrMalformed))
		}
		if size >= 0 {
			r.pos += size // blockHeader checked that size fits
		} else {
			for range count {
				if err := r.skipRecord(); err != nil {
					return 0, batchErr("records", r, err)
				}
			}
		}
		n += count
	}
	if r.left() != 0 {
		return 0, fmt.Errorf("bus: count: %d trailing bytes after the batch at byte %d: %w", r.left(), r.pos, ErrMalformed)
	}
	return n, nil
}

// skipRecord steps over one record, checking only that it fits.
func (r *reader) skipRecord() error {
	for range 2 { // source, device
		if err := r.skipUnion(1); err != nil {
			return err
		}
	}
	if err := r.skipUnion(2); err != nil { // tag
		return err
	}
	branch, err := r.long()
	if err != nil {
		return err
	}
	switch branch {
	case 0:
	case 1:
		err = r.skip(1)
	case 2:
		_, err = r.long()
	case 3:
		err = r.skip(8)
	case 4, 5:
		err = r.skipBytes()
	default:
		return fmt.Errorf("value union branch %d is not one of 0..5: %w", branch, ErrMalformed)
	}
	if err != nil {
		return err
	}
	for range 4 { // quality, status, time_delta, ingest_delta
		if _, err := r.long(); err != nil {
			return err
		}
	}
	if err := r.skipUnion(1); err != nil { // unit
		return err
	}
	if _, err := r.long(); err != nil { // seq_gap
		return err
	}
	for { // attrs
		count, size, err := r.blockHeader()
		if err != nil {
			return err
		}
		if count == 0 {
			return nil
		}
		if size >= 0 {
			r.pos += size
			continue
		}
		for range 2 * count {
			if err := r.skipBytes(); err != nil {
				return err
			}
		}
	}
}

// skipUnion steps over a union of null (branch 0), string (1) and, when
// maxBranch is 2, a TagSuffix (a long and a string).
func (r *reader) skipUnion(maxBranch int64) error {
	branch, err := r.long()
	if err != nil {
		return err
	}
	if branch < 0 || branch > maxBranch {
		return fmt.Errorf("union branch %d is not one of 0..%d: %w", branch, maxBranch, ErrMalformed)
	}
	if branch == 2 {
		if _, err := r.long(); err != nil {
			return err
		}
	}
	if branch > 0 {
		return r.skipBytes()
	}
	return nil
}

func (r *reader) skip(n int) error {
	if r.left() < n {
		return errShort
	}
	r.pos += n
	return nil
}

func (r *reader) skipBytes() error {
	n, err := r.long()
	if err != nil {
		return err
	}
	if n < 0 || n > int64(r.left()) {
		return lengthErr(n, r.left())
	}
	r.pos += int(n)
	return nil
}
