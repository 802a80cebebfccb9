package modbus

import (
	"sync"
	"time"
)

// ExceptionRule makes requests that touch an address range answer with an
// exception instead of data.
type ExceptionRule struct {
	// Unit is the unit ID the rule applies to, unless AnyUnit is set.
	Unit    uint8
	AnyUnit bool
	// Area limits the rule to one area; "" matches all four.
	Area Area
	// First and Last are the inclusive address range. A request matches
	// when any address it reads or writes falls in the range.
	First, Last uint16
	// Code is the exception code sent, e.g. IllegalDataAddress or
	// ServerDeviceBusy.
	Code ExceptionCode
	// Count, when positive, limits the rule to the next Count matching
	// requests, after which it removes itself (a device busy once, then
	// fine). 0 means until removed.
	Count int
}

// Malformation is a way to corrupt one reply.
type Malformation int

// The malformations.
const (
	// ShortPDU drops the last byte of the reply PDU while keeping the MBAP
	// length consistent with what is sent: the frame is well formed but
	// the PDU's byte count (reads) or fixed size (write echoes) is wrong,
	// so the client reports a size mismatch and the connection stays in
	// step.
	ShortPDU Malformation = iota + 1
	// TruncatedFrame sends an MBAP header whose length promises the whole
	// reply, then only part of it, and closes the connection: the client
	// reads a short frame (unexpected EOF).
	TruncatedFrame
	// WrongTransactionID answers with the request's transaction ID plus
	// one: the client reports a transaction-id mismatch.
	WrongTransactionID
)

func (m Malformation) String() string {
	switch m {
	case ShortPDU:
		return "short pdu"
	case TruncatedFrame:
		return "truncated frame"
	case WrongTransactionID:
		return "wrong transaction id"
	}
	return "none"
}

type exceptionEntry struct {
	id   uint64
	rule ExceptionRule
}

// faults is the runtime fault state; every request consults it once.
type faults struct {
	mu         sync.Mutex
	nextID     uint64
	exceptions []*exceptionEntry
	maxRegs    map[uint8]maxRegs
	delay      time.Duration
	delayLeft  int // requests still to delay; <0 = all
	silent     bool
	dropIn     int // requests still answered before a drop; <0 = none
	malform    Malformation
}

type maxRegs struct {
	n    int
	code ExceptionCode
}

// verdict is what the fault state decided for one request.
type verdict struct {
	drop      bool
	silent    bool
	delay     time.Duration
	exception ExceptionCode // 0 = none
	malform   Malformation
}

func newFaults() *faults {
	return &faults{maxRegs: map[uint8]maxRegs{}, dropIn: -1}
}

// decide consumes the one-shot and counted faults that apply to req.
func (f *faults) decide(unit uint8, fc byte, area Area, addr uint16, qty int) verdict {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v verdict
	if f.dropIn == 0 {
		f.dropIn = -1
		v.drop = true
		return v
	}
	if f.dropIn > 0 {
		f.dropIn--
	}
	if f.silent {
		v.silent = true
		return v
	}
	if f.delay > 0 && f.delayLeft != 0 {
		v.delay = f.delay
		if f.delayLeft > 0 {
			f.delayLeft--
		}
	}
	if area != "" {
		if m, ok := f.maxRegs[unit]; ok && m.n > 0 && !area.bits() && qty > m.n {
			v.exception = m.code
		}
		last := int(addr) + qty - 1
		for i := 0; v.exception == 0 && i < len(f.exceptions); i++ {
			e := f.exceptions[i]
			r := e.rule
			if (!r.AnyUnit && r.Unit != unit) || (r.Area != "" && r.Area != area) {
				continue
			}
			if int(addr) > int(r.Last) || last < int(r.First) {
				continue
			}
			v.exception = r.Code
			if r.Count > 0 {
				e.rule.Count--
				if e.rule.Count == 0 {
					f.exceptions = append(f.exceptions[:i], f.exceptions[i+1:]...)
				}
			}
		}
	}
	if f.malform != 0 {
		v.malform = f.malform
		f.malform = 0
	}
	return v
}

// AddException installs r and returns a function that removes it (safe to
// call more than once, or after the rule used up its Count). Rules are
// checked in the order they were added; the first match wins.
func (s *Server) AddException(r ExceptionRule) (remove func()) {
	f := s.faults
	f.mu.Lock()
	f.nextID++
	id := f.nextID
	f.exceptions = append(f.exceptions, &exceptionEntry{id: id, rule: r})
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, e := range f.exceptions {
			if e.id == id {
				f.exceptions = append(f.exceptions[:i], f.exceptions[i+1:]...)
				return
			}
		}
	}
}

// SetMaxRegisters makes unit reject register reads and writes (FC 3, 4, 16)
// of more than n registers with code (0 = IllegalDataAddress), like a
// device that cannot serve the protocol's 125. n 0 removes the limit.
func (s *Server) SetMaxRegisters(unit uint8, n int, code ExceptionCode) {
	if code == 0 {
		code = IllegalDataAddress
	}
	f := s.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		delete(f.maxRegs, unit)
		return
	}
	f.maxRegs[unit] = maxRegs{n: n, code: code}
}

// SetDelay holds each of the next n replies back by d (n < 0: every reply
// until changed). SetDelay(0, 0) answers promptly again. A delayed reply
// still arrives, in order; the connection reads no further request while it
// waits, as a single-threaded device would.
func (s *Server) SetDelay(d time.Duration, n int) {
	f := s.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay, f.delayLeft = d, n
	if d <= 0 || n == 0 {
		f.delay, f.delayLeft = 0, 0
	}
}

// AnswerLate delays exactly the next reply by d: with d longer than the
// client's timeout, the reply arrives after the client gave up on it, the
// situation of goburrow/modbus issue #64 (a client that does not drop the
// connection then reads that stale reply as the answer to a later request).
// It is SetDelay(d, 1).
func (s *Server) AnswerLate(d time.Duration) { s.SetDelay(d, 1) }

// SetSilent(true) keeps accepting connections and reading requests but
// answers none of them, as a device that hangs; SetSilent(false) answers
// again from the next request on. Requests read while silent are dropped,
// never answered later, so a client that timed out stays in step.
func (s *Server) SetSilent(silent bool) {
	f := s.faults
	f.mu.Lock()
	f.silent = silent
	f.mu.Unlock()
}

// DropAfter answers the next n requests normally, then closes the
// connection that carries the one after, without answering it. The fault
// then clears itself. DropAfter(0) drops on the next request; a negative n
// cancels a pending drop.
func (s *Server) DropAfter(n int) {
	f := s.faults
	f.mu.Lock()
	f.dropIn = max(n, -1)
	f.mu.Unlock()
}

// MalformNext corrupts the next reply in the way m says; 0 cancels.
func (s *Server) MalformNext(m Malformation) {
	f := s.faults
	f.mu.Lock()
	f.malform = m
	f.mu.Unlock()
}

// ClearFaults removes every fault: exception rules, register limits
// (including those from Config), delays, silence, a pending drop and a
// pending malformation.
func (s *Server) ClearFaults() {
	f := s.faults
	f.mu.Lock()
	defer f.mu.Unlock()
	f.exceptions = nil
	f.maxRegs = map[uint8]maxRegs{}
	f.delay, f.delayLeft = 0, 0
	f.silent = false
	f.dropIn = -1
	f.malform = 0
}
