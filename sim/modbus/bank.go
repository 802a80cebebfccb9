package modbus

import (
	"fmt"
	"math"
	"sync"
)

// Unit is the register bank of one unit ID: four areas, each covering the
// whole 0..65535 address space. Every address reads as zero (or false) until
// it is set. Storage is allocated in pages of 256 addresses as they are
// written, so a sparse map costs little. All methods are safe for concurrent
// use, with each other and with the server answering clients.
type Unit struct {
	id       uint8
	coils    *Bits
	discrete *Bits
	input    *Registers
	holding  *Registers
}

func newUnit(id uint8) *Unit {
	return &Unit{
		id:       id,
		coils:    &Bits{area: Coil},
		discrete: &Bits{area: Discrete},
		input:    &Registers{area: Input},
		holding:  &Registers{area: Holding},
	}
}

// ID returns the unit ID.
func (u *Unit) ID() uint8 { return u.id }

// Coils returns the coil area (FC 1, 5, 15).
func (u *Unit) Coils() *Bits { return u.coils }

// DiscreteInputs returns the discrete input area (FC 2).
func (u *Unit) DiscreteInputs() *Bits { return u.discrete }

// InputRegisters returns the input register area (FC 4).
func (u *Unit) InputRegisters() *Registers { return u.input }

// HoldingRegisters returns the holding register area (FC 3, 6, 16).
func (u *Unit) HoldingRegisters() *Registers { return u.holding }

// Registers returns the register area a (Input or Holding), or nil.
func (u *Unit) Registers(a Area) *Registers {
	switch a {
	case Input:
		return u.input
	case Holding:
		return u.holding
	}
	return nil
}

// Bits returns the bit area a (Coil or Discrete), or nil.
func (u *Unit) Bits(a Area) *Bits {
	switch a {
	case Coil:
		return u.coils
	case Discrete:
		return u.discrete
	}
	return nil
}

const pageSize = 256

// checkSpan panics when n addresses from addr do not fit below 65536: the
// programming API treats that as a bug in the caller, like an index out of
// range.
func checkSpan(area Area, addr uint16, n int) {
	if n < 0 || int(addr)+n > 1<<16 {
		panic(fmt.Sprintf("modbus sim: %s %d..%d is outside the address space 0..65535", area, addr, int(addr)+n-1))
	}
}

// Registers is one register area (input or holding) of a Unit.
//
// The typed setters and getters take an Order for every type so that calls
// read alike; for 16-bit types only its byte swap matters (see Order). They
// panic if the value does not fit below address 65535.
type Registers struct {
	area  Area
	mu    sync.RWMutex
	pages [1 << 16 / pageSize]*[pageSize]uint16
}

// Area returns Input or Holding.
func (r *Registers) Area() Area { return r.area }

// Set writes raw register values from addr on.
func (r *Registers) Set(addr uint16, vals ...uint16) {
	checkSpan(r.area, addr, len(vals))
	r.mu.Lock()
	r.setLocked(int(addr), vals)
	r.mu.Unlock()
}

func (r *Registers) setLocked(a int, vals []uint16) {
	for _, v := range vals {
		p := r.pages[a/pageSize]
		if p == nil {
			if v == 0 {
				a++
				continue
			}
			p = new([pageSize]uint16)
			r.pages[a/pageSize] = p
		}
		p[a%pageSize] = v
		a++
	}
}

// Get returns n raw register values from addr on.
func (r *Registers) Get(addr uint16, n int) []uint16 {
	checkSpan(r.area, addr, n)
	out := make([]uint16, n)
	r.mu.RLock()
	r.getLocked(int(addr), out)
	r.mu.RUnlock()
	return out
}

func (r *Registers) getLocked(a int, out []uint16) {
	for i := range out {
		if p := r.pages[a/pageSize]; p != nil {
			out[i] = p[a%pageSize]
		} else {
			out[i] = 0
		}
		a++
	}
}

// update applies f to the register at addr under the lock.
func (r *Registers) update(addr uint16, f func(uint16) uint16) {
	r.mu.Lock()
	var cur [1]uint16
	r.getLocked(int(addr), cur[:])
	cur[0] = f(cur[0])
	r.setLocked(int(addr), cur[:])
	r.mu.Unlock()
}

func (r *Registers) setRaw(addr uint16, t Type, raw uint64, o Order) {
	r.Set(addr, encodeBits(t, raw, o)...)
}

func (r *Registers) getRaw(addr uint16, t Type, o Order) uint64 {
	return decodeBits(r.Get(addr, t.Registers()), o)
}

// SetInt16 writes v at addr.
func (r *Registers) SetInt16(addr uint16, v int16, o Order) {
	r.setRaw(addr, Int16, uint64(uint16(v)), o)
}

// SetUint16 writes v at addr.
func (r *Registers) SetUint16(addr uint16, v uint16, o Order) {
	r.setRaw(addr, Uint16, uint64(v), o)
}

// SetInt32 writes v at addr and addr+1.
func (r *Registers) SetInt32(addr uint16, v int32, o Order) {
	r.setRaw(addr, Int32, uint64(uint32(v)), o)
}

// SetUint32 writes v at addr and addr+1.
func (r *Registers) SetUint32(addr uint16, v uint32, o Order) {
	r.setRaw(addr, Uint32, uint64(v), o)
}

// SetInt64 writes v at addr..addr+3.
func (r *Registers) SetInt64(addr uint16, v int64, o Order) {
	r.setRaw(addr, Int64, uint64(v), o)
}

// SetUint64 writes v at addr..addr+3.
func (r *Registers) SetUint64(addr uint16, v uint64, o Order) {
	r.setRaw(addr, Uint64, v, o)
}

// SetFloat32 writes v at addr and addr+1.
func (r *Registers) SetFloat32(addr uint16, v float32, o Order) {
	r.setRaw(addr, Float32, uint64(math.Float32bits(v)), o)
}

// SetFloat64 writes v at addr..addr+3.
func (r *Registers) SetFloat64(addr uint16, v float64, o Order) {
	r.setRaw(addr, Float64, math.Float64bits(v), o)
}

// Int16 reads the value at addr.
func (r *Registers) Int16(addr uint16, o Order) int16 {
	return int16(r.getRaw(addr, Int16, o))
}

// Uint16 reads the value at addr.
func (r *Registers) Uint16(addr uint16, o Order) uint16 {
	return uint16(r.getRaw(addr, Uint16, o))
}

// Int32 reads the value at addr and addr+1.
func (r *Registers) Int32(addr uint16, o Order) int32 {
	return int32(r.getRaw(addr, Int32, o))
}

// Uint32 reads the value at addr and addr+1.
func (r *Registers) Uint32(addr uint16, o Order) uint32 {
	return uint32(r.getRaw(addr, Uint32, o))
}

// Int64 reads the value at addr..addr+3.
func (r *Registers) Int64(addr uint16, o Order) int64 {
	return int64(r.getRaw(addr, Int64, o))
}

// Uint64 reads the value at addr..addr+3.
func (r *Registers) Uint64(addr uint16, o Order) uint64 {
	return r.getRaw(addr, Uint64, o)
}

// Float32 reads the value at addr and addr+1.
func (r *Registers) Float32(addr uint16, o Order) float32 {
	return math.Float32frombits(uint32(r.getRaw(addr, Float32, o)))
}

// Float64 reads the value at addr..addr+3.
func (r *Registers) Float64(addr uint16, o Order) float64 {
	return math.Float64frombits(r.getRaw(addr, Float64, o))
}

// SetString writes s two characters per register from addr on, NUL padded
// to nregs registers (0 = as many as s needs). o decides whether the first
// character is the high byte (ABCD, CDAB) or the low byte (BADC, DCBA). It
// panics if s is longer than 2*nregs bytes.
func (r *Registers) SetString(addr uint16, s string, nregs int, o Order) {
	regs, err := encodeString(s, nregs, o)
	if err != nil {
		panic("modbus sim: " + err.Error())
	}
	r.Set(addr, regs...)
}

// String reads nregs registers from addr as a string written by SetString,
// without trailing NULs.
func (r *Registers) String(addr uint16, nregs int, o Order) string {
	return decodeString(r.Get(addr, nregs), o)
}

// SetStringBytes writes s one character per register (in the low byte) from
// addr on, padded with zeros to nregs registers (0 = len(s)), as some devices
// do. It panics if s is longer than nregs bytes.
func (r *Registers) SetStringBytes(addr uint16, s string, nregs int) {
	regs, err := encodeStringByte(s, nregs)
	if err != nil {
		panic("modbus sim: " + err.Error())
	}
	r.Set(addr, regs...)
}

// StringBytes reads nregs registers from addr as a string written by
// SetStringBytes, without trailing NULs.
func (r *Registers) StringBytes(addr uint16, nregs int) string {
	return decodeStringByte(r.Get(addr, nregs))
}

// SetBit sets or clears bit (0 = least significant … 15) of the register at
// addr, leaving the other bits as they are.
func (r *Registers) SetBit(addr uint16, bit uint8, v bool) {
	if bit > 15 {
		panic(fmt.Sprintf("modbus sim: bit %d is not one of 0..15", bit))
	}
	r.update(addr, func(w uint16) uint16 {
		if v {
			return w | 1<<bit
		}
		return w &^ (1 << bit)
	})
}

// Bit reports bit (0 = least significant … 15) of the register at addr.
func (r *Registers) Bit(addr uint16, bit uint8) bool {
	if bit > 15 {
		panic(fmt.Sprintf("modbus sim: bit %d is not one of 0..15", bit))
	}
	return r.Get(addr, 1)[0]&(1<<bit) != 0
}

// SetValue writes v at addr as type t in order o. v may be any Go integer,
// float or bool for the numeric types (range-checked), a string for String
// and StringByte (nregs is the field length in registers, 0 = as needed),
// and a bool for Bit (bit is the bit number). It is what RegisterSpec.Value
// goes through.
func (r *Registers) SetValue(addr uint16, t Type, o Order, v any, nregs int, bit uint8) error {
	var regs []uint16
	switch t {
	case String, StringByte:
		s, ok := v.(string)
		if !ok {
			return fmt.Errorf("%v (%T) is not a string", v, v)
		}
		var err error
		if t == String {
			regs, err = encodeString(s, nregs, o)
		} else {
			regs, err = encodeStringByte(s, nregs)
		}
		if err != nil {
			return err
		}
	case Bit:
		b, ok := v.(bool)
		if !ok {
			return fmt.Errorf("%v (%T) is not a bool", v, v)
		}
		if bit > 15 {
			return fmt.Errorf("bit %d is not one of 0..15", bit)
		}
		r.SetBit(addr, bit, b)
		return nil
	case Bool, "":
		return fmt.Errorf("type %q does not fit a register area", t)
	default:
		raw, err := rawOf(t, v)
		if err != nil {
			return err
		}
		regs = encodeBits(t, raw, o)
	}
	if int(addr)+len(regs) > 1<<16 {
		return fmt.Errorf("%d registers from %d run past address 65535", len(regs), addr)
	}
	r.Set(addr, regs...)
	return nil
}

// Bits is one bit area (coils or discrete inputs) of a Unit.
type Bits struct {
	area  Area
	mu    sync.RWMutex
	pages [1 << 16 / pageSize]*[pageSize]bool
}

// Area returns Coil or Discrete.
func (b *Bits) Area() Area { return b.area }

// Set writes bits from addr on. It panics past address 65535.
func (b *Bits) Set(addr uint16, vals ...bool) {
	checkSpan(b.area, addr, len(vals))
	b.mu.Lock()
	b.setLocked(int(addr), vals)
	b.mu.Unlock()
}

func (b *Bits) setLocked(a int, vals []bool) {
	for _, v := range vals {
		p := b.pages[a/pageSize]
		if p == nil {
			if !v {
				a++
				continue
			}
			p = new([pageSize]bool)
			b.pages[a/pageSize] = p
		}
		p[a%pageSize] = v
		a++
	}
}

// Get returns n bits from addr on.
func (b *Bits) Get(addr uint16, n int) []bool {
	checkSpan(b.area, addr, n)
	out := make([]bool, n)
	b.mu.RLock()
	b.getLocked(int(addr), out)
	b.mu.RUnlock()
	return out
}

func (b *Bits) getLocked(a int, out []bool) {
	for i := range out {
		if p := b.pages[a/pageSize]; p != nil {
			out[i] = p[a%pageSize]
		} else {
			out[i] = false
		}
		a++
	}
}

// Bool reads the bit at addr.
func (b *Bits) Bool(addr uint16) bool { return b.Get(addr, 1)[0] }
