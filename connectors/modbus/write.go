package modbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
)

// TagWritable says whether the page may offer a write for a tag: exactly
// when its section says writable: true, which validation allows on coil and
// holding tags only. known is false for a device or tag this connector does
// not read (or before it started).
func (m *Modbus) TagWritable(device, tag string) (writable, known bool) {
	d, err := m.device(device)
	if err != nil {
		return false, false
	}
	i, ok := d.byTag[tag]
	if !ok {
		return false, false
	}
	return d.spec.tags[i].writable, true
}

// WriteTag writes v to a writable coil or holding tag: encoded with the
// tag's type and byte order, scale and offset applied in reverse. A coil is
// written with function 5 (15 with single_coil_write: fc15), one register
// with 6 (16 with single_register_write: fc16), more with 16; a bit tag
// reads its register and writes it back with the bit changed (other bits
// may change on the device in between: prefer a coil where there is one).
// A value that does not fit the tag is ErrInvalidValue wrapped in
// command.ErrRefused (nothing is sent); otherwise the error is the
// device's answer: nil when it confirmed the write, an *ExceptionError
// when it said no. With verify_writes, the tag is read back
// after a confirmed write, and a *NotKeptError (ErrNotKept) says the
// device did not keep the value. A successful write makes the device poll
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
	op, err := encodeWrite(t, v, d.set)
	if err != nil {
		// Nothing was sent: a command result says refused, not failed.
		return fmt.Errorf("modbus: %s/%s: %w: %w", device, tag, command.ErrRefused, err)
	}
	timeout := d.set.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = max(left, time.Millisecond)
		}
	}
	d.met.requests.Inc()
	d.diag.writes.Add(1)
	t0 := time.Now()
	err = d.link.write(ctx, d.spec.unit, timeout, d.set.pauseBetween, op)
	d.diag.observe(time.Since(t0), err)
	if err != nil {
		err = d.wrap("write", t.area, int(t.addr), t.size, err)
	} else if d.set.verifyWrites {
		err = d.verify(ctx, t, op, timeout)
	}
	if d.set.closeAfterPoll {
		d.link.hangUp(ctx)
	}
	result := "ok"
	var ee *ExceptionError
	switch {
	case err == nil:
	case errors.Is(err, ErrNotKept):
		result = "not_kept"
		d.diag.notKept.Add(1)
	case errors.As(err, &ee):
		result = "exception"
	default:
		result = "failed"
	}
	d.met.all.writes.WithLabelValues(d.met.module, d.met.device, result).Inc()
	if err == nil || errors.Is(err, ErrNotKept) {
		d.requestPoll() // report what the device holds now
	}
	return err
}

// verify reads tag t back after op was confirmed and reports whether the
// device kept what was written.
func (d *device) verify(ctx context.Context, t *tagSpec, op writeOp, timeout time.Duration) error {
	d.met.requests.Inc()
	t0 := time.Now()
	got, err := d.link.read(ctx, d.spec.unit, timeout, d.set.pauseBetween, t.area, t.addr, t.size)
	d.diag.observe(time.Since(t0), err)
	if err != nil {
		return d.wrap("read back", t.area, int(t.addr), t.size, err)
	}
	var kept bool
	var wrote, read string
	switch {
	case t.area == Coil:
		w, r := op.value != 0, got[0]&1 != 0
		kept, wrote, read = w == r, strconv.FormatBool(w), strconv.FormatBool(r)
	case op.bit >= 0:
		r := t.order.Uint(got, 1)>>op.bit&1 != 0
		kept, wrote, read = r == op.set, strconv.FormatBool(op.set), strconv.FormatBool(r)
	default:
		want := op.data
		if want == nil {
			want = binary.BigEndian.AppendUint16(nil, op.value)
		}
		kept = bytes.Equal(got, want)
		wrote, read = d.show(t, want), d.show(t, got)
	}
	if kept {
		return nil
	}
	return &NotKeptError{Device: d.spec.name, Tag: t.name, Wrote: wrote, Read: read}
}

// show renders registers as the tag's value, for messages.
func (d *device) show(t *tagSpec, b []byte) string {
	if v, ok := d.value(t, &tagState{}, b); ok {
		return v.String()
	}
	return fmt.Sprintf("0x%X", b)
}

// encodeWrite turns v into the write for tag t.
func encodeWrite(t *tagSpec, v bus.Value, set *settings) (writeOp, error) {
	op := writeOp{addr: t.addr, bit: -1, order: t.order, fc16: set.regFC16}
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
		if set.coilFC15 {
			op.fc = 15
		}
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
	if t.size == 1 && !set.regFC16 {
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
		if t.typ.bcd() {
			return toBCD(uint64(i)), nil
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
	case TFloat16:
		h, ok := toFloat16(f)
		if !ok {
			return 0, outOfRange(t, v)
		}
		return uint64(h), nil
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
	if t.typ.bcd() {
		return toBCD(uint64(f)), nil
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
	case TBCD16:
		return 0, 9999
	case TBCD32:
		return 0, 99999999
	}
	return 0, math.MaxUint64
}

func outOfRange(t *tagSpec, v bus.Value) error {
	if t.scaled {
		return fmt.Errorf("%w: %s is out of range for %s with scale %g and offset %g", ErrInvalidValue, v, t.typ, t.scale, t.offset)
	}
	return fmt.Errorf("%w: %s is out of range for %s", ErrInvalidValue, v, t.typ)
}
