package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// WriteTag writes v to a writable coil or holding tag: encoded with the
// tag's type and byte order, scale and offset applied in reverse. A coil is
// written with function 5, one register with 6, more with 16; a bit tag
// reads its register and writes it back with the bit changed (other bits
// may change on the device in between: prefer a coil where there is one).
// The error is the device's answer: nil when it confirmed the write, an
// *ExceptionError when it refused. A successful write makes the device poll
// at once, so the new value is reported without waiting for the interval.
func (m *Modbus) WriteTag(ctx context.Context, device, tag string, v bus.Value) error {
	d, err := m.device(device)
	if err != nil {
		return err
	}
	i, ok := d.byTag[tag]
	if !ok {
		return fmt.Errorf("modbus: %w: device %q has no tag %q", connectors.ErrUnknownTag, device, tag)
	}
	t := &d.spec.tags[i]
	if !t.writable {
		return fmt.Errorf("modbus: %s/%s: %w (set writable: true on a coil or holding tag)", device, tag, connectors.ErrNotWritable)
	}
	op, err := encodeWrite(t, v)
	if err != nil {
		return fmt.Errorf("modbus: %s/%s: %w", device, tag, err)
	}
	timeout := d.set.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = max(left, time.Millisecond)
		}
	}
	d.met.requests.Inc()
	err = d.link.write(ctx, d.spec.unit, timeout, op)
	result := "ok"
	if err != nil {
		result = "failed"
		var ee *ExceptionError
		if errors.As(err, &ee) {
			result = "exception"
		}
	}
	d.met.all.writes.WithLabelValues(d.met.module, d.met.device, result).Inc()
	if err != nil {
		return d.wrap("write", t.area, int(t.addr), t.size, err)
	}
	d.requestPoll()
	return nil
}

// encodeWrite turns v into the write for tag t.
func encodeWrite(t *tagSpec, v bus.Value) (writeOp, error) {
	op := writeOp{addr: t.addr, bit: -1, order: t.order}
	switch t.typ {
	case TBool, TBit:
		b, err := boolOf(v)
		if err != nil {
			return op, err
		}
		if t.typ == TBit {
			op.bit, op.set, op.fc = int8(t.bit), b, 6
			return op, nil
		}
		op.fc = 5
		if b {
			op.value = 0xFF00
		}
		return op, nil
	case TString:
		if v.Kind != bus.KindString && v.Kind != bus.KindBytes {
			return op, fmt.Errorf("%w: a string tag takes a string, not %s", ErrInvalidValue, v.Kind)
		}
		s := v.Str()
		if len(s) > t.strLen {
			return op, fmt.Errorf("%w: %d characters do not fit the tag's length %d", ErrInvalidValue, len(s), t.strLen)
		}
		op.fc, op.data = 16, encodeString(s, t.size, t.order, t.byteEach)
		return op, nil
	}
	raw, err := rawOf(t, v)
	if err != nil {
		return op, err
	}
	buf := make([]byte, 2*t.size)
	t.order.PutUint(buf, t.size, raw)
	if t.size == 1 {
		op.fc, op.value = 6, binary.BigEndian.Uint16(buf)
		return op, nil
	}
	op.fc, op.data = 16, buf
	return op, nil
}

func boolOf(v bus.Value) (bool, error) {
	switch v.Kind {
	case bus.KindBool:
		return v.Bool(), nil
	case bus.KindLong, bus.KindDouble:
		f, _ := v.Float()
		if f == 0 || f == 1 {
			return f == 1, nil
		}
	}
	return false, fmt.Errorf("%w: a bool tag takes true or false (or 0 or 1), not %s %s", ErrInvalidValue, v.Kind, v)
}

// rawOf is the bit pattern for a numeric tag: the value with scale and
// offset reversed, rounded to the nearest integer for integer types, and
// range-checked.
func rawOf(t *tagSpec, v bus.Value) (uint64, error) {
	if v.Kind == bus.KindLong && !t.scaled && !t.typ.float() {
		i := v.Long()
		lo, hi := intRange(t.typ)
		if t.typ == TUint64 {
			if i < 0 {
				return 0, outOfRange(t, v)
			}
			return uint64(i), nil
		}
		if float64(i) < lo || float64(i) > hi {
			return 0, outOfRange(t, v)
		}
		return uint64(i), nil
	}
	f, ok := v.Float()
	if !ok {
		return 0, fmt.Errorf("%w: a %s tag takes a number, not %s", ErrInvalidValue, t.typ, v.Kind)
	}
	if math.IsNaN(f) && !t.typ.float() || math.IsInf(f, 0) && !t.typ.float() {
		return 0, outOfRange(t, v)
	}
	f = (f - t.offset) / t.scale
	switch t.typ {
	case TFloat32:
		if math.Abs(f) > math.MaxFloat32 && !math.IsInf(f, 0) {
			return 0, outOfRange(t, v)
		}
		return uint64(math.Float32bits(float32(f))), nil
	case TFloat64:
		return math.Float64bits(f), nil
	}
	f = math.Round(f)
	lo, hi := intRange(t.typ)
	if !(f >= lo && f <= hi) || (t.typ == TInt64 || t.typ == TUint64) && f == hi {
		return 0, outOfRange(t, v) // 2^63 and 2^64 are the first values past the 64-bit types
	}
	if t.typ == TUint64 {
		if f >= 1<<63 {
			return uint64(f-(1<<63)) + 1<<63, nil
		}
		return uint64(int64(f)), nil
	}
	return uint64(int64(f)), nil
}

func intRange(t Type) (float64, float64) {
	switch t {
	case TInt16:
		return math.MinInt16, math.MaxInt16
	case TUint16:
		return 0, math.MaxUint16
	case TInt32:
		return math.MinInt32, math.MaxInt32
	case TUint32:
		return 0, math.MaxUint32
	case TInt64:
		return math.MinInt64, math.MaxInt64
	}
	return 0, math.MaxUint64
}

func outOfRange(t *tagSpec, v bus.Value) error {
	if t.scaled {
		return fmt.Errorf("%w: %s is out of range for %s with scale %g and offset %g", ErrInvalidValue, v, t.typ, t.scale, t.offset)
	}
	return fmt.Errorf("%w: %s is out of range for %s", ErrInvalidValue, v, t.typ)
}
