package modbus

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Quirks of real devices that are not faults of one request but how a
// device is: a gateway that allows few connections, a device that rejects
// a function code it does not implement, one that confirms a write and
// keeps its own value. They are set at run time from any goroutine.

// quirks is an immutable snapshot; the server swaps it whole, so a request
// reads it with one atomic load and none at all when no quirk is set.
type quirks struct {
	rejectFC map[byte]ExceptionCode
	ignore   []ignoreRule
	maxConns int
}

type ignoreRule struct {
	unit        uint8
	area        Area
	first, last uint16
}

type quirkState struct {
	mu  sync.Mutex // serialises the swaps
	cur atomic.Pointer[quirks]
}

func (q *quirkState) update(f func(*quirks)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	next := &quirks{rejectFC: map[byte]ExceptionCode{}}
	if c := q.cur.Load(); c != nil {
		for k, v := range c.rejectFC {
			next.rejectFC[k] = v
		}
		next.ignore = append(next.ignore, c.ignore...)
		next.maxConns = c.maxConns
	}
	f(next)
	q.cur.Store(next)
}

// RejectFunction makes every unit answer function code fc with exception
// code (IllegalFunction when 0), as a device that does not implement it:
// many reject FC 6 and take single registers only with FC 16. code
// ExceptionCode(0xFF) removes the rule.
func (s *Server) RejectFunction(fc byte, code ExceptionCode) {
	if code == 0 {
		code = IllegalFunction
	}
	s.quirks.update(func(q *quirks) {
		if code == 0xFF {
			delete(q.rejectFC, fc)
			return
		}
		q.rejectFC[fc] = code
	})
}

// IgnoreWrites makes unit confirm writes (FC 5, 6, 15, 16) that touch
// area between first and last (inclusive) without storing them, as a
// device whose own logic overwrites the value, or that is in local mode.
func (s *Server) IgnoreWrites(unit uint8, area Area, first, last uint16) {
	s.quirks.update(func(q *quirks) {
		q.ignore = append(q.ignore, ignoreRule{unit, area, first, last})
	})
}

// SetMaxConnections makes the server accept at most n client connections
// at a time (0: no limit); one more is closed as soon as it is accepted,
// as small serial gateways do, and counted in Counters.Refused.
func (s *Server) SetMaxConnections(n int) {
	s.quirks.update(func(q *quirks) { q.maxConns = max(n, 0) })
}

func (s *Server) rejected(fc byte) ExceptionCode {
	q := s.quirks.cur.Load()
	if q == nil {
		return 0
	}
	return q.rejectFC[fc]
}

func (s *Server) keeps(unit uint8, area Area, addr uint16, qty int) bool {
	q := s.quirks.cur.Load()
	if q == nil {
		return true
	}
	last := int(addr) + qty - 1
	for _, r := range q.ignore {
		if r.unit == unit && r.area == area && int(addr) <= int(r.last) && last >= int(r.first) {
			return false
		}
	}
	return true
}

func (s *Server) maxConns() int {
	if q := s.quirks.cur.Load(); q != nil {
		return q.maxConns
	}
	return 0
}

// minGap keeps the shortest duration observed; 0 until one is.
type minGap struct{ ns atomic.Int64 }

func (m *minGap) observe(d time.Duration) {
	v := max(int64(d), 1)
	for {
		cur := m.ns.Load()
		if cur != 0 && cur <= v {
			return
		}
		if m.ns.CompareAndSwap(cur, v) {
			return
		}
	}
}

func (m *minGap) get() time.Duration { return time.Duration(m.ns.Load()) }

// SetFloat16 writes v as an IEEE 754 half-precision value (rounded to the
// nearest, ties to even) at addr.
func (r *Registers) SetFloat16(addr uint16, v float32) {
	r.Set(addr, half(v))
}

// half converts from the float32 bit pattern: rebias the exponent and
// round the 23-bit mantissa to 10 bits.
func half(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xFF
	mant := b & 0x7FFFFF
	switch {
	case exp == 0xFF: // Inf, NaN
		if mant != 0 {
			return sign | 0x7E00
		}
		return sign | 0x7C00
	case exp == 0 && mant == 0:
		return sign
	}
	e := exp - 127 + 15
	if e >= 0x1F {
		return sign | 0x7C00
	}
	m := mant | 0x800000 // 24 bits with the hidden one
	shift := uint(13)
	if e <= 0 { // subnormal half
		shift += uint(1 - e)
		e = 0
		if shift > 24 {
			return sign
		}
	} else {
		m &^= 0x800000
	}
	rounded := m >> shift
	rem := m & (1<<shift - 1)
	halfway := uint32(1) << (shift - 1)
	if rem > halfway || rem == halfway && rounded&1 == 1 {
		rounded++
	}
	// A carry out of the mantissa moves into the exponent, which is
	// exactly the next binade (or Inf) in this encoding.
	return sign | (uint16(e)<<10 + uint16(rounded))
}

// SetBCD16 writes v (0..9999) as four packed BCD digits at addr.
func (r *Registers) SetBCD16(addr uint16, v uint16) {
	r.Set(addr, uint16(bcd(uint64(v))))
}

// SetBCD32 writes v (0..99999999) as eight packed BCD digits at addr and
// addr+1 in order o.
func (r *Registers) SetBCD32(addr uint16, v uint32, o Order) {
	r.setRaw(addr, Uint32, bcd(uint64(v)), o)
}

func bcd(v uint64) uint64 {
	var out uint64
	for i := 0; v > 0; i++ {
		out |= (v % 10) << (4 * i)
		v /= 10
	}
	return out
}
