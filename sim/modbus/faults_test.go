package modbus

import (
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// faultServer is unit 1 with holding register i = i for 0..499.
func faultServer(t *testing.T) *Server {
	t.Helper()
	s := start(t, Config{Units: []UnitConfig{{ID: 1}, {ID: 2}}})
	vals := make([]uint16, 500)
	for i := range vals {
		vals[i] = uint16(i)
	}
	s.Unit(1).HoldingRegisters().Set(0, vals...)
	return s
}

func TestExceptionRanges(t *testing.T) {
	s := faultServer(t)
	cl, _ := dial(t, s, 1, 2*time.Second)
	remove := s.AddException(ExceptionRule{Unit: 1, Area: Holding, First: 100, Last: 109, Code: IllegalDataAddress})

	_, err := cl.ReadHoldingRegisters(95, 6) // 95..100 overlaps
	wantException(t, err, IllegalDataAddress)
	_, err = cl.ReadHoldingRegisters(109, 1)
	wantException(t, err, IllegalDataAddress)
	_, err = cl.WriteSingleRegister(105, 1) // writes too
	wantException(t, err, IllegalDataAddress)
	if _, err := cl.ReadHoldingRegisters(110, 10); err != nil {
		t.Errorf("after the range: %v", err)
	}
	if _, err := cl.ReadHoldingRegisters(90, 10); err != nil {
		t.Errorf("before the range: %v", err)
	}
	if _, err := cl.ReadInputRegisters(100, 1); err != nil {
		t.Errorf("other area: %v", err)
	}
	cl2, _ := dial(t, s, 2, 2*time.Second)
	if _, err := cl2.ReadHoldingRegisters(100, 1); err != nil {
		t.Errorf("other unit: %v", err)
	}
	remove()
	remove()
	if b, err := cl.ReadHoldingRegisters(100, 1); err != nil || b[1] != 100 {
		t.Errorf("after remove: % x %v", b, err)
	}

	// Busy twice, then fine; any unit, any area.
	s.AddException(ExceptionRule{AnyUnit: true, First: 0, Last: 0xFFFF, Code: ServerDeviceBusy, Count: 2})
	_, err = cl.ReadCoils(0, 1)
	wantException(t, err, ServerDeviceBusy)
	_, err = cl2.ReadInputRegisters(0, 1)
	wantException(t, err, ServerDeviceBusy)
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Errorf("third request: %v", err)
	}
	c := s.Counters()
	if c.Exceptions != 5 || c.ByFunction[3] != 7 || c.ByFunction[6] != 1 {
		t.Errorf("counters = %+v", c)
	}
}

func TestMaxRegisters(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{
		{ID: 1, MaxRegisters: 16},
		{ID: 2, MaxRegisters: 8, MaxRegistersCode: IllegalDataValue},
	}})
	cl1, _ := dial(t, s, 1, 2*time.Second)
	cl2, _ := dial(t, s, 2, 2*time.Second)
	if _, err := cl1.ReadHoldingRegisters(0, 16); err != nil {
		t.Errorf("16 registers: %v", err)
	}
	_, err := cl1.ReadHoldingRegisters(0, 17)
	wantException(t, err, IllegalDataAddress)
	_, err = cl1.ReadInputRegisters(0, 17)
	wantException(t, err, IllegalDataAddress)
	_, err = cl1.WriteMultipleRegisters(0, 17, make([]byte, 34))
	wantException(t, err, IllegalDataAddress)
	if _, err := cl1.ReadCoils(0, 100); err != nil {
		t.Errorf("bits are not limited: %v", err)
	}
	_, err = cl2.ReadHoldingRegisters(0, 9)
	wantException(t, err, IllegalDataValue)

	s.SetMaxRegisters(1, 0, 0)
	if _, err := cl1.ReadHoldingRegisters(0, 125); err != nil {
		t.Errorf("limit removed: %v", err)
	}
	s.SetMaxRegisters(1, 4, ServerDeviceFailure)
	_, err = cl1.ReadHoldingRegisters(0, 5)
	wantException(t, err, ServerDeviceFailure)
}

func TestSlowReplies(t *testing.T) {
	s := faultServer(t)
	cl, h := dial(t, s, 1, 2*time.Second)
	const d = 300 * time.Millisecond
	s.SetDelay(d, 2)
	for i := range 2 {
		t0 := time.Now()
		if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(t0); el < d {
			t.Errorf("reply %d after %v, want at least %v", i, el, d)
		}
	}
	// The third is prompt: a client timeout below the delay is enough.
	h.Timeout = d - 50*time.Millisecond
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Errorf("third reply: %v", err)
	}

	s.SetDelay(d, -1) // all
	h.Timeout = 2 * time.Second
	for range 2 {
		t0 := time.Now()
		if _, err := cl.ReadHoldingRegisters(0, 1); err != nil || time.Since(t0) < d {
			t.Errorf("delay all: %v after %v", err, time.Since(t0))
		}
	}
	s.SetDelay(0, 0)
	h.Timeout = d - 50*time.Millisecond
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Errorf("after SetDelay(0, 0): %v", err)
	}
}

// TestAnswerLate reproduces goburrow/modbus issue #64: one reply arrives
// after the client's timeout; the client, which keeps the connection,
// reads it as the answer to a later request and fails the transaction-id
// check; a new connection is in step again.
func TestAnswerLate(t *testing.T) {
	s := faultServer(t)
	const timeout = 100 * time.Millisecond
	cl, h := dial(t, s, 1, timeout)
	if _, err := cl.ReadHoldingRegisters(7, 1); err != nil {
		t.Fatal(err)
	}
	s.AnswerLate(4 * timeout)
	if _, err := cl.ReadHoldingRegisters(7, 1); !isTimeout(err) {
		t.Fatalf("late request: err = %v, want a timeout", err)
	}
	mismatch := false
	for range 20 {
		_, err := cl.ReadHoldingRegisters(8, 1)
		if err != nil && strings.Contains(err.Error(), "transaction id") {
			mismatch = true
			break
		}
	}
	if !mismatch {
		t.Fatal("the late reply never showed up as a transaction-id mismatch")
	}
	_ = h.Close() // what the connector does to resynchronise
	if b, err := cl.ReadHoldingRegisters(9, 1); err != nil || b[1] != 9 {
		t.Errorf("after reconnect: % x %v", b, err)
	}
}

// TestAnswerLateRaw checks the late reply itself: nothing before the
// delay, then the right transaction ID.
func TestAnswerLateRaw(t *testing.T) {
	s := faultServer(t)
	r := dialRaw(t, s)
	s.AnswerLate(200 * time.Millisecond)
	r.send(41, 1, 3, 0, 5, 0, 1)
	_ = r.c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, _, _, err := r.recv(); !isTimeout(err) {
		t.Fatalf("before the delay: %v, want a timeout", err)
	}
	_ = r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	txn, _, pdu, err := r.recv()
	if err != nil || txn != 41 || binary.BigEndian.Uint16(pdu[2:]) != 5 {
		t.Errorf("late reply: txn %d pdu % x %v", txn, pdu, err)
	}
}

func TestSilent(t *testing.T) {
	s := faultServer(t)
	cl, h := dial(t, s, 1, 2*time.Second)
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Fatal(err)
	}
	s.SetSilent(true)
	h.Timeout = 150 * time.Millisecond
	for range 2 {
		if _, err := cl.ReadHoldingRegisters(0, 1); !isTimeout(err) {
			t.Fatalf("silent: err = %v, want a timeout", err)
		}
	}
	// New connections are accepted but not answered either.
	cl2, _ := dial(t, s, 1, 150*time.Millisecond)
	if _, err := cl2.ReadHoldingRegisters(0, 1); !isTimeout(err) {
		t.Fatalf("silent, new connection: err = %v, want a timeout", err)
	}
	s.SetSilent(false)
	// Same connection, no reconnect: the dropped requests are never
	// answered, so the client is still in step.
	for i := range 3 {
		if b, err := cl.ReadHoldingRegisters(uint16(i), 1); err != nil || b[1] != byte(i) {
			t.Fatalf("after silence: % x %v", b, err)
		}
	}
	c := s.Counters()
	if c.Unanswered != 3 || c.Requests != 4 || c.Connections != 2 {
		t.Errorf("counters = %+v", c)
	}
}

func TestDropAfter(t *testing.T) {
	s := faultServer(t)
	cl, h := dial(t, s, 1, 2*time.Second)
	s.DropAfter(2)
	for range 2 {
		if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.ReadHoldingRegisters(0, 1); err == nil || isTimeout(err) {
		t.Fatalf("third request: err = %v, want a closed connection", err)
	}
	_ = h.Close()
	for range 3 { // the fault cleared itself
		if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
			t.Fatalf("after reconnect: %v", err)
		}
	}
	if c := s.Counters(); c.Connections != 2 || c.Unanswered != 1 || c.Requests != 5 {
		t.Errorf("counters = %+v", c)
	}

	s.DropConnections()
	if _, err := cl.ReadHoldingRegisters(0, 1); err == nil {
		t.Fatal("after DropConnections: no error")
	}
	_ = h.Close()
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Fatalf("after DropConnections and reconnect: %v", err)
	}
}

func TestRestart(t *testing.T) {
	s := faultServer(t)
	addr := s.Addr()
	cl, h := dial(t, s, 1, 2*time.Second)
	if _, err := cl.ReadHoldingRegisters(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Restart(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Errorf("address changed: %s → %s", addr, s.Addr())
	}
	if _, err := cl.ReadHoldingRegisters(0, 1); err == nil {
		t.Fatal("old connection still answered after Restart")
	}
	_ = h.Close()
	b, err := cl.ReadHoldingRegisters(42, 1)
	if err != nil || b[1] != 42 {
		t.Fatalf("new connection: % x %v", b, err)
	}
	if c := s.Counters(); c.Connections != 2 {
		t.Errorf("connections = %d", c.Connections)
	}
	// Restart while a delayed reply is pending does not hang.
	s.SetDelay(time.Hour, 1)
	r := dialRaw(t, s)
	r.send(1, 1, 3, 0, 0, 0, 1)
	if err := s.Restart(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.recv(); err == nil {
		t.Error("pending request answered across a restart")
	}
}

func TestMalformed(t *testing.T) {
	s := faultServer(t)
	cl, h := dial(t, s, 1, 2*time.Second)

	s.MalformNext(ShortPDU)
	if _, err := cl.ReadHoldingRegisters(0, 4); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("short pdu: err = %v", err)
	}
	if _, err := cl.ReadHoldingRegisters(0, 4); err != nil {
		t.Errorf("after short pdu, same connection: %v", err)
	}
	s.MalformNext(ShortPDU)
	if _, err := cl.WriteSingleRegister(0, 1); err == nil {
		t.Error("short pdu on a write echo: no error")
	}

	s.MalformNext(WrongTransactionID)
	if _, err := cl.ReadHoldingRegisters(0, 4); err == nil || !strings.Contains(err.Error(), "transaction id") {
		t.Errorf("wrong transaction id: err = %v", err)
	}
	if _, err := cl.ReadHoldingRegisters(0, 4); err != nil {
		t.Errorf("after wrong transaction id, same connection: %v", err)
	}

	s.MalformNext(TruncatedFrame)
	_, err := cl.ReadHoldingRegisters(0, 4)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated frame: err = %v, want unexpected EOF", err)
	}
	_ = h.Close()
	if _, err := cl.ReadHoldingRegisters(0, 4); err != nil {
		t.Errorf("after truncated frame and reconnect: %v", err)
	}
	// Each malformation was one-shot and the replies were counted.
	if c := s.Counters(); c.Requests != 7 || c.ByFunction[3] != 6 {
		t.Errorf("counters = %+v", c)
	}
}

func TestCountersAndReset(t *testing.T) {
	s := faultServer(t)
	cl, _ := dial(t, s, 1, 2*time.Second)
	cl2, _ := dial(t, s, 2, 2*time.Second)
	for range 3 {
		if _, err := cl.ReadHoldingRegisters(0, 125); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = cl2.ReadInputRegisters(0, 10)
	_, _ = cl2.ReadInputRegisters(0, 10)
	_, _ = cl.ReadCoils(0, 8)
	c := s.Counters()
	if c.Requests != 6 || c.ByFunction[3] != 3 || c.ByFunction[4] != 2 || c.ByFunction[1] != 1 ||
		c.ByUnit[1] != 4 || c.ByUnit[2] != 2 || len(c.ByFunction) != 3 || c.Connections != 2 {
		t.Errorf("counters = %+v", c)
	}
	s.ResetCounters()
	c = s.Counters()
	if c.Requests != 0 || len(c.ByFunction) != 0 || len(c.ByUnit) != 0 || c.Connections != 0 {
		t.Errorf("after reset = %+v", c)
	}
	_, _ = cl.ReadHoldingRegisters(0, 1)
	if got := s.Counters().ByFunction[3]; got != 1 {
		t.Errorf("after reset and one read: %d", got)
	}
}

func TestClearFaults(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{{ID: 1, MaxRegisters: 2}}})
	cl, h := dial(t, s, 1, 2*time.Second)
	s.AddException(ExceptionRule{Unit: 1, First: 0, Last: 0, Code: ServerDeviceBusy})
	s.SetDelay(time.Hour, -1)
	s.SetSilent(true)
	s.DropAfter(0)
	s.MalformNext(TruncatedFrame)
	s.ClearFaults()
	h.Timeout = time.Second
	if _, err := cl.ReadHoldingRegisters(0, 10); err != nil {
		t.Errorf("after ClearFaults: %v", err)
	}
}
