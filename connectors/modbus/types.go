package modbus

import (
	"encoding/binary"
	"math"
)

// Area is one of the four Modbus data tables.
type Area uint8

// The areas, in the order messages list them.
const (
	Coil     Area = iota // read/write bits: FC 1, 5, 15
	Discrete             // read-only bits: FC 2
	Input                // read-only registers: FC 4
	Holding              // read/write registers: FC 3, 6, 16
)

var areaNames = [...]string{"coil", "discrete", "input", "holding"}

// AreaNames lists the valid area names.
var AreaNames = areaNames[:]

func (a Area) String() string {
	if int(a) < len(areaNames) {
		return areaNames[a]
	}
	return "area?"
}

// ParseArea returns the area named s.
func ParseArea(s string) (Area, bool) {
	for i, n := range areaNames {
		if n == s {
			return Area(i), true
		}
	}
	return 0, false
}

// Bits reports whether a holds bits (coil, discrete) rather than registers.
func (a Area) Bits() bool { return a == Coil || a == Discrete }

// Writable reports whether clients may write to a.
func (a Area) Writable() bool { return a == Coil || a == Holding }

// Limit is the protocol's most addresses one read request may cover.
func (a Area) Limit() int {
	if a.Bits() {
		return 2000
	}
	return 125
}

// ReadFunction is the function code that reads a.
func (a Area) ReadFunction() byte {
	return [...]byte{1, 2, 4, 3}[a]
}

// Type is how a tag's value is laid out.
type Type uint8

// The types.
const (
	TBool Type = iota // one coil or discrete input
	TBit              // one bit of a register
	TInt16
	TUint16
	TInt32
	TUint32
	TInt64
	TUint64
	TFloat32
	TFloat64
	TString
	TFloat16 // IEEE 754 half precision, one register
	TBCD16   // four decimal digits, one per nibble: 0x1234 is 1234
	TBCD32   // eight decimal digits in two registers (word order applies)
)

var typeNames = [...]string{"bool", "bit", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string", "float16", "bcd16", "bcd32"}

// TypeNames lists the valid type names.
var TypeNames = typeNames[:]

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return "type?"
}

// ParseType returns the type named s.
func ParseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n == s {
			return Type(i), true
		}
	}
	return 0, false
}

// words is the number of registers a numeric type occupies (0 for bool and
// string, whose size is not fixed by the type).
func (t Type) words() int {
	switch t {
	case TBit, TInt16, TUint16, TFloat16, TBCD16:
		return 1
	case TInt32, TUint32, TFloat32, TBCD32:
		return 2
	case TInt64, TUint64, TFloat64:
		return 4
	}
	return 0
}

func (t Type) numeric() bool { return t >= TInt16 && t <= TFloat64 || t >= TFloat16 && t <= TBCD32 }
func (t Type) signed() bool  { return t == TInt16 || t == TInt32 || t == TInt64 }
func (t Type) float() bool   { return t == TFloat32 || t == TFloat64 || t == TFloat16 }
func (t Type) bcd() bool     { return t == TBCD16 || t == TBCD32 }

// Order is the byte and word order of a value in registers. The letters
// name a 32-bit value's bytes from most (A) to least (D) significant, in the
// order they travel, register by register. See the README for a worked
// example.
type Order uint8

// The orders.
const (
	ABCD Order = iota // big-endian words, big-endian bytes: the Modbus default
	BADC              // bytes swapped within each word
	CDAB              // words swapped (least significant word first)
	DCBA              // fully little-endian
)

var orderNames = [...]string{"ABCD", "BADC", "CDAB", "DCBA"}

// OrderNames lists the valid orders.
var OrderNames = orderNames[:]

func (o Order) String() string {
	if int(o) < len(orderNames) {
		return orderNames[o]
	}
	return "order?"
}

// ParseOrder returns the order named s.
func ParseOrder(s string) (Order, bool) {
	for i, n := range orderNames {
		if n == s {
			return Order(i), true
		}
	}
	return 0, false
}

func (o Order) swapBytes() bool { return o == BADC || o == DCBA }
func (o Order) swapWords() bool { return o == CDAB || o == DCBA }

// Uint reads the n registers (big-endian bytes as they came off the wire)
// at b as one unsigned value in order o.
func (o Order) Uint(b []byte, n int) uint64 {
	var raw uint64
	for i := range n {
		j := i
		if o.swapWords() {
			j = n - 1 - i
		}
		w := binary.BigEndian.Uint16(b[2*j:])
		if o.swapBytes() {
			w = w>>8 | w<<8
		}
		raw = raw<<16 | uint64(w)
	}
	return raw
}

// Float32 reads two registers at b as a float32 in order o.
func (o Order) Float32(b []byte) float32 {
	return math.Float32frombits(uint32(o.Uint(b, 2)))
}

// PutUint writes the low 16·n bits of raw into the n registers at b in
// order o; the inverse of Uint.
func (o Order) PutUint(b []byte, n int, raw uint64) {
	for i := n - 1; i >= 0; i-- {
		w := uint16(raw)
		raw >>= 16
		if o.swapBytes() {
			w = w>>8 | w<<8
		}
		j := i
		if o.swapWords() {
			j = n - 1 - i
		}
		binary.BigEndian.PutUint16(b[2*j:], w)
	}
}

// decodeString reads a string field of max chars from regs (the field's
// registers, wire bytes): two characters per register (first character in
// the high byte unless the order swaps bytes), or one in the low byte of
// each register when byteEach. Trailing NULs and spaces are dropped. prev
// is returned instead of a new string when the text did not change, so a
// steady string costs no allocation.
func decodeString(regs []byte, max int, o Order, byteEach bool, prev string) string {
	var buf [256]byte
	n := 0
	if byteEach {
		for i := 0; i+1 < len(regs) && n < max; i += 2 {
			buf[n] = regs[i+1]
			n++
		}
	} else {
		for i := 0; i+1 < len(regs) && n < max; i += 2 {
			hi, lo := regs[i], regs[i+1]
			if o.swapBytes() {
				hi, lo = lo, hi
			}
			buf[n] = hi
			n++
			if n < max {
				buf[n] = lo
				n++
			}
		}
	}
	for n > 0 && (buf[n-1] == 0 || buf[n-1] == ' ') {
		n--
	}
	if string(buf[:n]) == prev {
		return prev
	}
	return string(buf[:n])
}

// encodeString lays s out in nregs registers (wire bytes), the inverse of
// decodeString, NUL padded.
func encodeString(s string, nregs int, o Order, byteEach bool) []byte {
	b := make([]byte, 2*nregs)
	if byteEach {
		for i := 0; i < len(s) && i < nregs; i++ {
			b[2*i+1] = s[i]
		}
		return b
	}
	for i := 0; i < len(s) && i < 2*nregs; i++ {
		j := i
		if o.swapBytes() {
			j ^= 1
		}
		b[j] = s[i]
	}
	return b
}

// float16 decodes an IEEE 754 half-precision value.
func float16(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1F
	frac := float64(h & 0x3FF)
	switch exp {
	case 0: // zero and subnormals
		return sign * math.Ldexp(frac, -24)
	case 0x1F:
		if frac != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	}
	return sign * math.Ldexp(1024+frac, exp-25)
}

// toFloat16 encodes f as the nearest half-precision value (ties to even);
// ok is false when f is finite but beyond the largest half (65504).
func toFloat16(f float64) (uint16, bool) {
	var sign uint16
	if math.Signbit(f) {
		sign, f = 0x8000, -f
	}
	switch {
	case math.IsNaN(f):
		return 0x7E00, true
	case math.IsInf(f, 0):
		return sign | 0x7C00, true
	case f == 0:
		return sign, true
	}
	_, e := math.Frexp(f) // f = m·2^e, m in [0.5, 1)
	exp := e - 1 + 15     // biased exponent of 1.x·2^(e-1)
	if exp <= 0 {         // subnormal: units of 2^-24
		n := math.RoundToEven(math.Ldexp(f, 24))
		return sign | uint16(n), true // n = 1024 carries into the smallest normal
	}
	n := math.RoundToEven(math.Ldexp(f, 10-(e-1))) // 1024..2048
	if n == 2048 {
		n, exp = 1024, exp+1
	}
	if exp >= 0x1F {
		return 0, false
	}
	return sign | uint16(exp)<<10 | uint16(n-1024), true
}

// fromBCD decodes n digits of packed BCD; ok is false when a nibble is not
// a decimal digit.
func fromBCD(raw uint64, n int) (int64, bool) {
	var v int64
	for i := n - 1; i >= 0; i-- {
		d := raw >> (4 * i) & 0xF
		if d > 9 {
			return 0, false
		}
		v = v*10 + int64(d)
	}
	return v, true
}

// toBCD encodes v (0 ≤ v < 10^n) as n digits of packed BCD.
func toBCD(v uint64) uint64 {
	var raw uint64
	for shift := 0; v > 0; shift += 4 {
		raw |= (v % 10) << shift
		v /= 10
	}
	return raw
}
