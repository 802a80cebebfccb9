package modbus

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Area is one of the four Modbus data tables.
type Area string

// The four areas. Coils and holding registers are writable by clients.
const (
	Coil     Area = "coil"     // read/write bits: FC 1, 5, 15
	Discrete Area = "discrete" // read-only bits: FC 2
	Input    Area = "input"    // read-only registers: FC 4
	Holding  Area = "holding"  // read/write registers: FC 3, 6, 16
)

// Areas lists the valid areas, in the order error messages show them.
var Areas = []Area{Coil, Discrete, Input, Holding}

func (a Area) valid() bool {
	return a == Coil || a == Discrete || a == Input || a == Holding
}

// bits reports whether a is a bit area (coil or discrete).
func (a Area) bits() bool { return a == Coil || a == Discrete }

// Order is the byte and word order of a multi-byte value in registers. The
// letters name the bytes of a 32-bit value from most (A) to least (D)
// significant, in the order they appear on the wire, register by register:
//
//   - ABCD: big-endian bytes in big-endian words, the Modbus default
//     (0x11223344 is sent as registers 0x1122, 0x3344).
//   - CDAB: word-swapped: little-endian word order, big-endian bytes in each
//     word (0x3344, 0x1122).
//   - BADC: byte-swapped within each word, big-endian word order
//     (0x2211, 0x4433).
//   - DCBA: fully little-endian (0x4433, 0x2211).
//
// The same rule extends to 64-bit values (ABCD = ABCDEFGH, CDAB = GHEFCDAB,
// BADC = BADCFEHG, DCBA = HGFEDCBA) and to 16-bit values, where only the
// byte swap matters (ABCD and CDAB = AB; BADC and DCBA = BA). For strings the
// byte swap decides whether the first character is the high (ABCD, CDAB) or
// the low (BADC, DCBA) byte of a register; word order does not apply. The
// empty Order means ABCD.
type Order string

// The four orders.
const (
	ABCD Order = "ABCD"
	BADC Order = "BADC"
	CDAB Order = "CDAB"
	DCBA Order = "DCBA"
)

// Orders lists the valid orders.
var Orders = []Order{ABCD, BADC, CDAB, DCBA}

func (o Order) valid() bool {
	return o == "" || o == ABCD || o == BADC || o == CDAB || o == DCBA
}

func (o Order) swapBytes() bool { return o == BADC || o == DCBA }
func (o Order) swapWords() bool { return o == CDAB || o == DCBA }

// Type is how a value is laid out in registers (or, for Bool, in one bit of
// a bit area).
type Type string

// The types. Strings take their length in registers from RegisterSpec.Length
// (or from the value).
const (
	Bool       Type = "bool"        // one coil or discrete input
	Bit        Type = "bit"         // one bit (0 = LSB … 15) of a register
	Int16      Type = "int16"       // 1 register
	Uint16     Type = "uint16"      // 1 register
	Int32      Type = "int32"       // 2 registers
	Uint32     Type = "uint32"      // 2 registers
	Float32    Type = "float32"     // 2 registers, IEEE 754
	Int64      Type = "int64"       // 4 registers
	Uint64     Type = "uint64"      // 4 registers
	Float64    Type = "float64"     // 4 registers, IEEE 754
	String     Type = "string"      // 2 characters per register, NUL padded
	StringByte Type = "string_byte" // 1 character per register, in the low byte
)

// Types lists the valid types.
var Types = []Type{Bool, Bit, Int16, Uint16, Int32, Uint32, Float32, Int64, Uint64, Float64, String, StringByte}

// Registers returns how many registers a value of t occupies: 1 for Bit,
// Int16 and Uint16, 2 for 32-bit types, 4 for 64-bit types, and 0 for Bool
// and the string types (whose size depends on the length).
func (t Type) Registers() int {
	switch t {
	case Bit, Int16, Uint16:
		return 1
	case Int32, Uint32, Float32:
		return 2
	case Int64, Uint64, Float64:
		return 4
	}
	return 0
}

func (t Type) valid() bool {
	for _, v := range Types {
		if t == v {
			return true
		}
	}
	return false
}

func (t Type) numeric() bool { return t.Registers() > 0 && t != Bit }

// ExceptionCode is a Modbus exception code sent in an exception response.
type ExceptionCode byte

// Exception codes from the Modbus application protocol specification.
const (
	IllegalFunction         ExceptionCode = 0x01
	IllegalDataAddress      ExceptionCode = 0x02
	IllegalDataValue        ExceptionCode = 0x03
	ServerDeviceFailure     ExceptionCode = 0x04
	Acknowledge             ExceptionCode = 0x05
	ServerDeviceBusy        ExceptionCode = 0x06
	MemoryParityError       ExceptionCode = 0x08
	GatewayPathUnavailable  ExceptionCode = 0x0A
	GatewayTargetNoResponse ExceptionCode = 0x0B
)

func (c ExceptionCode) String() string {
	switch c {
	case IllegalFunction:
		return "illegal function"
	case IllegalDataAddress:
		return "illegal data address"
	case IllegalDataValue:
		return "illegal data value"
	case ServerDeviceFailure:
		return "server device failure"
	case Acknowledge:
		return "acknowledge"
	case ServerDeviceBusy:
		return "server device busy"
	case MemoryParityError:
		return "memory parity error"
	case GatewayPathUnavailable:
		return "gateway path unavailable"
	case GatewayTargetNoResponse:
		return "gateway target device failed to respond"
	}
	return "exception 0x" + strconv.FormatUint(uint64(c), 16)
}

// encodeBytes lays the big-endian bytes b (an even number of them) out in
// registers according to o.
func encodeBytes(b []byte, o Order) []uint16 {
	n := len(b) / 2
	regs := make([]uint16, n)
	for i := range n {
		w := binary.BigEndian.Uint16(b[2*i:])
		if o.swapBytes() {
			w = w>>8 | w<<8
		}
		j := i
		if o.swapWords() {
			j = n - 1 - i
		}
		regs[j] = w
	}
	return regs
}

// decodeBytes is the inverse of encodeBytes: it returns the big-endian bytes
// of the value held in regs.
func decodeBytes(regs []uint16, o Order) []byte {
	n := len(regs)
	b := make([]byte, 2*n)
	for i := range n {
		j := i
		if o.swapWords() {
			j = n - 1 - i
		}
		w := regs[j]
		if o.swapBytes() {
			w = w>>8 | w<<8
		}
		binary.BigEndian.PutUint16(b[2*i:], w)
	}
	return b
}

// encodeBits returns the registers holding the low t.Registers()*16 bits of
// raw, in order o.
func encodeBits(t Type, raw uint64, o Order) []uint16 {
	n := t.Registers()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], raw)
	return encodeBytes(b[8-2*n:], o)
}

// decodeBits is the inverse of encodeBits.
func decodeBits(regs []uint16, o Order) uint64 {
	var b [8]byte
	copy(b[8-2*len(regs):], decodeBytes(regs, o))
	return binary.BigEndian.Uint64(b[:])
}

// encodeString lays s out two characters per register, NUL padded to nregs
// registers (nregs 0 = as many as s needs). o decides which byte comes first.
func encodeString(s string, nregs int, o Order) ([]uint16, error) {
	if nregs == 0 {
		nregs = (len(s) + 1) / 2
	}
	if len(s) > 2*nregs {
		return nil, fmt.Errorf("string of %d bytes does not fit in %d registers", len(s), nregs)
	}
	regs := make([]uint16, nregs)
	for i := 0; i < len(s); i++ {
		shift := 8
		if i%2 == 1 {
			shift = 0
		}
		if o.swapBytes() {
			shift = 8 - shift
		}
		regs[i/2] |= uint16(s[i]) << shift
	}
	return regs, nil
}

func decodeString(regs []uint16, o Order) string {
	b := make([]byte, 0, 2*len(regs))
	for _, w := range regs {
		if o.swapBytes() {
			w = w>>8 | w<<8
		}
		b = append(b, byte(w>>8), byte(w))
	}
	return strings.TrimRight(string(b), "\x00")
}

// encodeStringByte lays s out one character per register, in the low byte,
// padded with zero registers to nregs (0 = len(s)).
func encodeStringByte(s string, nregs int) ([]uint16, error) {
	if nregs == 0 {
		nregs = len(s)
	}
	if len(s) > nregs {
		return nil, fmt.Errorf("string of %d bytes does not fit in %d registers", len(s), nregs)
	}
	regs := make([]uint16, nregs)
	for i := 0; i < len(s); i++ {
		regs[i] = uint16(s[i])
	}
	return regs, nil
}

func decodeStringByte(regs []uint16) string {
	b := make([]byte, len(regs))
	for i, w := range regs {
		b[i] = byte(w)
	}
	return strings.TrimRight(string(b), "\x00")
}

// rawOf converts v (any Go number or bool, as the programming API or a YAML
// decoder gives it) to the bit pattern of a numeric type t, checking the
// range.
func rawOf(t Type, v any) (uint64, error) {
	switch t {
	case Float32:
		f, err := floatOf(v)
		if err != nil {
			return 0, err
		}
		if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
			return 0, fmt.Errorf("%v overflows float32", v)
		}
		return uint64(math.Float32bits(float32(f))), nil
	case Float64:
		f, err := floatOf(v)
		if err != nil {
			return 0, err
		}
		return math.Float64bits(f), nil
	}
	// Integer types.
	var (
		i   int64
		u   uint64
		neg bool
	)
	switch x := v.(type) {
	case int:
		i, neg = int64(x), x < 0
	case int8:
		i, neg = int64(x), x < 0
	case int16:
		i, neg = int64(x), x < 0
	case int32:
		i, neg = int64(x), x < 0
	case int64:
		i, neg = x, x < 0
	case uint:
		u = uint64(x)
	case uint8:
		u = uint64(x)
	case uint16:
		u = uint64(x)
	case uint32:
		u = uint64(x)
	case uint64:
		u = x
	case float32, float64:
		f, _ := floatOf(x)
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			return 0, fmt.Errorf("%v is not an integer", v)
		}
		if f < 0 {
			if f < math.MinInt64 {
				return 0, fmt.Errorf("%v is out of range for %s", v, t)
			}
			i, neg = int64(f), true
		} else {
			if f >= 1<<64 {
				return 0, fmt.Errorf("%v is out of range for %s", v, t)
			}
			u = uint64(f)
		}
	case bool:
		if x {
			u = 1
		}
	default:
		return 0, fmt.Errorf("%v (%T) is not a number", v, v)
	}
	if !neg && i > 0 {
		u = uint64(i)
	}
	var lo int64
	var hi uint64
	switch t {
	case Int16:
		lo, hi = math.MinInt16, math.MaxInt16
	case Uint16:
		lo, hi = 0, math.MaxUint16
	case Int32:
		lo, hi = math.MinInt32, math.MaxInt32
	case Uint32:
		lo, hi = 0, math.MaxUint32
	case Int64:
		lo, hi = math.MinInt64, math.MaxInt64
	case Uint64:
		lo, hi = 0, math.MaxUint64
	default:
		return 0, fmt.Errorf("type %q is not numeric", t)
	}
	if (neg && i < lo) || (!neg && u > hi) {
		return 0, fmt.Errorf("%v is out of range for %s", v, t)
	}
	if neg {
		return uint64(i), nil
	}
	return u, nil
}

func floatOf(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case float32:
		return float64(x), nil
	case int:
		return float64(x), nil
	case int8:
		return float64(x), nil
	case int16:
		return float64(x), nil
	case int32:
		return float64(x), nil
	case int64:
		return float64(x), nil
	case uint:
		return float64(x), nil
	case uint8:
		return float64(x), nil
	case uint16:
		return float64(x), nil
	case uint32:
		return float64(x), nil
	case uint64:
		return float64(x), nil
	}
	return 0, fmt.Errorf("%v (%T) is not a number", v, v)
}

// wrapRaw converts a signal's float value to the bit pattern of t, wrapping
// integers the way a device counter register wraps.
func wrapRaw(t Type, f float64) uint64 {
	switch t {
	case Float32:
		return uint64(math.Float32bits(float32(f)))
	case Float64:
		return math.Float64bits(f)
	case Uint64:
		if f >= 0 {
			if f >= 1<<64 {
				return uint64(math.Mod(f, 1<<64))
			}
			return uint64(f)
		}
	}
	if f >= 1<<63 || f < -(1<<63) {
		f = math.Mod(f, 1<<64)
	}
	return uint64(int64(f))
}
