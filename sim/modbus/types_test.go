package modbus

import (
	"math"
	"slices"
	"testing"
)

func TestEncodeOrders(t *testing.T) {
	cases := []struct {
		t    Type
		raw  uint64
		o    Order
		want []uint16
	}{
		{Uint16, 0x1122, ABCD, []uint16{0x1122}},
		{Uint16, 0x1122, CDAB, []uint16{0x1122}},
		{Uint16, 0x1122, BADC, []uint16{0x2211}},
		{Uint16, 0x1122, DCBA, []uint16{0x2211}},
		{Uint32, 0x11223344, ABCD, []uint16{0x1122, 0x3344}},
		{Uint32, 0x11223344, CDAB, []uint16{0x3344, 0x1122}},
		{Uint32, 0x11223344, BADC, []uint16{0x2211, 0x4433}},
		{Uint32, 0x11223344, DCBA, []uint16{0x4433, 0x2211}},
		{Uint64, 0x1122334455667788, ABCD, []uint16{0x1122, 0x3344, 0x5566, 0x7788}},
		{Uint64, 0x1122334455667788, CDAB, []uint16{0x7788, 0x5566, 0x3344, 0x1122}},
		{Uint64, 0x1122334455667788, BADC, []uint16{0x2211, 0x4433, 0x6655, 0x8877}},
		{Uint64, 0x1122334455667788, DCBA, []uint16{0x8877, 0x6655, 0x4433, 0x2211}},
	}
	for _, c := range cases {
		got := encodeBits(c.t, c.raw, c.o)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %#x %s = %04x, want %04x", c.t, c.raw, c.o, got, c.want)
		}
		if back := decodeBits(got, c.o); back != c.raw {
			t.Errorf("%s %#x %s decodes to %#x", c.t, c.raw, c.o, back)
		}
	}
}

func TestEncodeStrings(t *testing.T) {
	regs, err := encodeString("ABC", 3, ABCD)
	if err != nil || !slices.Equal(regs, []uint16{0x4142, 0x4300, 0}) {
		t.Errorf("ABCD: %04x %v", regs, err)
	}
	regs, _ = encodeString("ABC", 0, BADC)
	if !slices.Equal(regs, []uint16{0x4241, 0x0043}) {
		t.Errorf("BADC: %04x", regs)
	}
	if s := decodeString([]uint16{0x4241, 0x0043, 0}, DCBA); s != "ABC" {
		t.Errorf("decode DCBA = %q", s)
	}
	if _, err := encodeString("ABCDE", 2, ABCD); err == nil {
		t.Error("5 bytes in 2 registers: no error")
	}
	regs, _ = encodeStringByte("AB", 3)
	if !slices.Equal(regs, []uint16{0x41, 0x42, 0}) {
		t.Errorf("byte per register: %04x", regs)
	}
}

func TestRawOf(t *testing.T) {
	ok := []struct {
		t    Type
		v    any
		want uint64
	}{
		{Int16, -1, 0xFFFF},
		{Int16, int64(-32768), 0x8000},
		{Uint16, 65535, 0xFFFF},
		{Uint16, 3.0, 3},
		{Int32, -2, 0xFFFFFFFE},
		{Uint32, uint32(0xDEADBEEF), 0xDEADBEEF},
		{Int64, math.MinInt64, 1 << 63},
		{Uint64, uint64(math.MaxUint64), math.MaxUint64},
		{Float32, 1.5, uint64(math.Float32bits(1.5))},
		{Float32, 2, uint64(math.Float32bits(2))},
		{Float64, -0.25, math.Float64bits(-0.25)},
		{Uint16, true, 1},
	}
	for _, c := range ok {
		got, err := rawOf(c.t, c.v)
		if err != nil || got&mask(c.t) != c.want {
			t.Errorf("rawOf(%s, %v) = %#x, %v; want %#x", c.t, c.v, got, err, c.want)
		}
	}
	bad := []struct {
		t Type
		v any
	}{
		{Uint16, 65536}, {Uint16, -1}, {Int16, 32768}, {Int32, 1.5},
		{Uint32, -1.0}, {Float32, 1e39}, {Int16, "7"}, {String, 1},
	}
	for _, c := range bad {
		if _, err := rawOf(c.t, c.v); err == nil {
			t.Errorf("rawOf(%s, %v): no error", c.t, c.v)
		}
	}
}

func mask(t Type) uint64 {
	if t.Registers() == 4 {
		return math.MaxUint64
	}
	return 1<<(16*t.Registers()) - 1
}

func TestWrapRaw(t *testing.T) {
	if got := uint16(wrapRaw(Uint16, 65537)); got != 1 {
		t.Errorf("uint16 counter 65537 wraps to %d, want 1", got)
	}
	if got := int16(wrapRaw(Int16, 32768)); got != -32768 {
		t.Errorf("int16 counter 32768 wraps to %d", got)
	}
	if got := wrapRaw(Uint64, 1<<63); got != 1<<63 {
		t.Errorf("uint64 2^63 = %#x", got)
	}
}
