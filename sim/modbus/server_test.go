package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

// typedCase is one value of each numeric type; raw is its bit pattern and
// yaml is the value as a YAML decoder would hand it to a RegisterSpec.
var typedCases = []struct {
	t    Type
	v    any // the Go value for the typed setter
	raw  uint64
	yaml any
}{
	{Int16, int16(-12345), uint64(uint16(0xCFC7)), -12345},
	{Uint16, uint16(54321), 54321, 54321},
	{Int32, int32(-123456789), uint64(uint32(0xF8A432EB)), -123456789},
	{Uint32, uint32(0xDEADBEEF), 0xDEADBEEF, 3735928559},
	{Int64, int64(-1234567890123456789), uint64(0xEEDD_EF0B_8216_7EEB), int64(-1234567890123456789)},
	{Uint64, uint64(0xFEDCBA9876543210), 0xFEDCBA9876543210, uint64(0xFEDCBA9876543210)},
	{Float32, float32(-21.5), uint64(math.Float32bits(-21.5)), -21.5},
	{Float64, -31415926535.897932, math.Float64bits(-31415926535.897932), -31415926535.897932},
}

func setTyped(r *Registers, addr uint16, v any, o Order) {
	switch x := v.(type) {
	case int16:
		r.SetInt16(addr, x, o)
	case uint16:
		r.SetUint16(addr, x, o)
	case int32:
		r.SetInt32(addr, x, o)
	case uint32:
		r.SetUint32(addr, x, o)
	case int64:
		r.SetInt64(addr, x, o)
	case uint64:
		r.SetUint64(addr, x, o)
	case float32:
		r.SetFloat32(addr, x, o)
	case float64:
		r.SetFloat64(addr, x, o)
	}
}

func getTyped(r *Registers, addr uint16, t Type, o Order) any {
	switch t {
	case Int16:
		return r.Int16(addr, o)
	case Uint16:
		return r.Uint16(addr, o)
	case Int32:
		return r.Int32(addr, o)
	case Uint32:
		return r.Uint32(addr, o)
	case Int64:
		return r.Int64(addr, o)
	case Uint64:
		return r.Uint64(addr, o)
	case Float32:
		return r.Float32(addr, o)
	case Float64:
		return r.Float64(addr, o)
	}
	return nil
}

// TestTypedRoundTrip puts every type in every order into the bank three
// ways (typed setter, RegisterSpec from config, client write FC 16) and
// checks the bytes a client reads against an independent decoder.
func TestTypedRoundTrip(t *testing.T) {
	// Config path: one spec per type and order in input registers.
	var specs []RegisterSpec
	addr := uint16(1000)
	for _, c := range typedCases {
		for _, o := range Orders {
			specs = append(specs, RegisterSpec{Area: Input, Address: addr, Type: c.t, Order: o, Value: c.yaml})
			addr += 4
		}
	}
	s := start(t, Config{Units: []UnitConfig{{ID: 1, Registers: specs}}})
	cl, _ := dial(t, s, 1, 2*time.Second)
	h := s.Unit(1).HoldingRegisters()

	addr = 1000
	for _, c := range typedCases {
		for _, o := range Orders {
			n := uint16(c.t.Registers())
			t.Run(fmt.Sprintf("%s/%s", c.t, o), func(t *testing.T) {
				// Typed setter → client read.
				setTyped(h, addr, c.v, o)
				b, err := cl.ReadHoldingRegisters(addr, n)
				if err != nil {
					t.Fatal(err)
				}
				if got := fromWire(b, o); got != c.raw {
					t.Errorf("setter: client read %#x (% x), want %#x", got, b, c.raw)
				}
				if got := getTyped(h, addr, c.t, o); got != c.v {
					t.Errorf("getter = %v, want %v", got, c.v)
				}
				// Config spec → client read (FC 4).
				b, err = cl.ReadInputRegisters(addr, n)
				if err != nil {
					t.Fatal(err)
				}
				if got := fromWire(b, o); got != c.raw {
					t.Errorf("config: client read %#x (% x), want %#x", got, b, c.raw)
				}
				// Client write (FC 16) → typed getter.
				w := addr + 10000
				if _, err := cl.WriteMultipleRegisters(w, n, toWire(c.raw, 2*int(n), o)); err != nil {
					t.Fatal(err)
				}
				if got := getTyped(h, w, c.t, o); got != c.v {
					t.Errorf("after client write: getter = %v, want %v", got, c.v)
				}
			})
			addr += 4
		}
	}
}

func TestStringsAndBits(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{{ID: 1, Registers: []RegisterSpec{
		{Area: Holding, Address: 200, Type: String, Length: 4, Value: "SN-42"},
		{Area: Holding, Address: 210, Type: StringByte, Length: 6, Value: "ABC"},
		{Area: Holding, Address: 220, Type: Bit, Bit: 3, Value: true},
		{Area: Holding, Address: 220, Type: Bit, Bit: 15, Value: true},
		{Area: Coil, Address: 7, Value: true},
		{Area: Discrete, Address: 9, Value: true},
	}}}})
	cl, _ := dial(t, s, 1, 2*time.Second)
	h := s.Unit(1).HoldingRegisters()

	b, err := cl.ReadHoldingRegisters(200, 4)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "SN-42\x00\x00\x00" {
		t.Errorf("string on the wire = %q", b)
	}
	if got := h.String(200, 4, ABCD); got != "SN-42" {
		t.Errorf("String = %q", got)
	}
	h.SetString(300, "XY", 2, BADC)
	b, _ = cl.ReadHoldingRegisters(300, 2)
	if !slices.Equal(b, []byte{'Y', 'X', 0, 0}) {
		t.Errorf("BADC string on the wire = %q", b)
	}

	b, _ = cl.ReadHoldingRegisters(210, 6)
	if !slices.Equal(regsOf(b), []uint16{'A', 'B', 'C', 0, 0, 0}) {
		t.Errorf("one byte per register = %04x", regsOf(b))
	}
	if got := h.StringBytes(210, 6); got != "ABC" {
		t.Errorf("StringBytes = %q", got)
	}

	b, _ = cl.ReadHoldingRegisters(220, 1)
	if got := binary.BigEndian.Uint16(b); got != 0x8008 {
		t.Errorf("bits 3 and 15 = %#04x, want 0x8008", got)
	}
	h.SetBit(220, 3, false)
	h.SetBit(220, 0, true)
	b, _ = cl.ReadHoldingRegisters(220, 1)
	if got := binary.BigEndian.Uint16(b); got != 0x8001 || !h.Bit(220, 15) || h.Bit(220, 3) {
		t.Errorf("after SetBit = %#04x", got)
	}

	// Bit packing: coil 7 is bit 7 of the first byte; 10 coils from 0.
	s.Unit(1).Coils().Set(8, true, false, true)
	b, err = cl.ReadCoils(0, 11)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b, []byte{0x80, 0x05}) {
		t.Errorf("coils 0..10 = % x, want 80 05", b)
	}
	b, _ = cl.ReadDiscreteInputs(9, 1)
	if !slices.Equal(b, []byte{1}) {
		t.Errorf("discrete 9 = % x", b)
	}
}

func TestClientWrites(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{{ID: 1}}})
	cl, _ := dial(t, s, 1, 2*time.Second)
	u := s.Unit(1)

	if _, err := cl.WriteSingleRegister(5, 0xBEEF); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteMultipleRegisters(65533, 3, []byte{0, 1, 0, 2, 0, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteSingleCoil(3, 0xFF00); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.WriteMultipleCoils(100, 10, []byte{0b1010_0101, 0b10}); err != nil {
		t.Fatal(err)
	}
	h := u.HoldingRegisters()
	if got := h.Uint16(5, ABCD); got != 0xBEEF {
		t.Errorf("FC 6: holding 5 = %#x", got)
	}
	if got := h.Get(65533, 3); !slices.Equal(got, []uint16{1, 2, 3}) {
		t.Errorf("FC 16 at the top of the space: %v", got)
	}
	if !u.Coils().Bool(3) {
		t.Error("FC 5: coil 3 not set")
	}
	want := []bool{true, false, true, false, false, true, false, true, false, true}
	if got := u.Coils().Get(100, 10); !slices.Equal(got, want) {
		t.Errorf("FC 15: %v, want %v", got, want)
	}
	if _, err := cl.WriteSingleCoil(3, 0); err != nil || u.Coils().Bool(3) {
		t.Errorf("FC 5 off: %v, coil %v", err, u.Coils().Bool(3))
	}
	c := s.Counters()
	for fc, n := range map[byte]uint64{5: 2, 6: 1, 15: 1, 16: 1} {
		if c.ByFunction[fc] != n {
			t.Errorf("FC %d counted %d, want %d", fc, c.ByFunction[fc], n)
		}
	}
	if c.Requests != 5 || c.Exceptions != 0 || c.ByUnit[1] != 5 {
		t.Errorf("counters = %+v", c)
	}
}

func TestUnits(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{
		{ID: 1, Registers: []RegisterSpec{{Area: Holding, Address: 0, Value: 111}}},
		{ID: 2, Registers: []RegisterSpec{{Area: Holding, Address: 0, Value: 222}}},
	}})
	s.Unit(3).HoldingRegisters().Set(0, 333) // added at run time
	for id, want := range map[uint8]uint16{1: 111, 2: 222, 3: 333} {
		cl, _ := dial(t, s, id, 2*time.Second)
		b, err := cl.ReadHoldingRegisters(0, 1)
		if err != nil || binary.BigEndian.Uint16(b) != want {
			t.Errorf("unit %d: % x %v, want %d", id, b, err, want)
		}
	}
	cl, _ := dial(t, s, 9, 2*time.Second)
	_, err := cl.ReadHoldingRegisters(0, 1)
	wantException(t, err, GatewayTargetNoResponse)
	if c := s.Counters(); c.ByUnit[1] != 1 || c.ByUnit[9] != 1 || c.Connections != 4 {
		t.Errorf("counters = %+v", c)
	}
}

// TestProtocolErrors sends frames the goburrow client refuses to build.
func TestProtocolErrors(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{{ID: 1}}})
	r := dialRaw(t, s)
	cases := []struct {
		name string
		pdu  []byte
		want []byte
	}{
		{"unknown function", []byte{0x2B, 0x0E, 0x01, 0x00}, []byte{0xAB, 0x01}},
		{"zero quantity", []byte{3, 0, 0, 0, 0}, []byte{0x83, 0x03}},
		{"126 registers", []byte{3, 0, 0, 0, 126}, []byte{0x83, 0x03}},
		{"past 65535", []byte{4, 0xFF, 0xFF, 0, 2}, []byte{0x84, 0x02}},
		{"short request", []byte{3, 0, 0}, []byte{0x83, 0x03}},
		{"FC 5 value", []byte{5, 0, 3, 0x12, 0x34}, []byte{0x85, 0x03}},
		{"FC 16 byte count", []byte{16, 0, 0, 0, 1, 3, 0, 1, 2}, []byte{0x90, 0x03}},
		{"read at 65535", []byte{3, 0xFF, 0xFF, 0, 1}, []byte{3, 2, 0, 0}},
	}
	for i, c := range cases {
		r.send(uint16(i+100), 1, c.pdu...)
		txn, unit, pdu, err := r.recv()
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if txn != uint16(i+100) || unit != 1 || !slices.Equal(pdu, c.want) {
			t.Errorf("%s: txn %d unit %d pdu % x, want % x", c.name, txn, unit, pdu, c.want)
		}
	}
	// Pipelined requests are answered in order.
	r.send(1, 1, 3, 0, 0, 0, 1)
	r.send(2, 1, 3, 0, 0, 0, 2)
	for want := uint16(1); want <= 2; want++ {
		if txn, _, _, err := r.recv(); err != nil || txn != want {
			t.Errorf("pipelined: txn %d %v, want %d", txn, err, want)
		}
	}
	// A bad protocol ID ends the connection.
	if _, err := r.c.Write([]byte{0, 9, 0, 7, 0, 6, 1, 3, 0, 0, 0, 1}); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.recv(); err == nil {
		t.Error("bad protocol ID: got a reply")
	}
}

func TestSignals(t *testing.T) {
	s := start(t, Config{Tick: time.Hour, Units: []UnitConfig{{ID: 1, Registers: []RegisterSpec{
		{Area: Holding, Address: 0, Type: Int32, Order: CDAB, Signal: &Signal{Kind: Counter, Value: 1000, Step: 5}},
		{Area: Holding, Address: 2, Type: Float32, Signal: &Signal{Kind: Sine, Offset: 20, Amplitude: 2, Period: 4 * time.Hour}},
		{Area: Holding, Address: 4, Type: Uint16, Signal: &Signal{Kind: Counter, Value: 65534}},
		{Area: Holding, Address: 5, Type: Int16, Signal: &Signal{Kind: Static, Value: -7}},
		{Area: Coil, Address: 0, Signal: &Signal{Kind: Counter}},
		{Area: Holding, Address: 6, Type: Bit, Bit: 2, Signal: &Signal{Kind: Counter}},
	}}}})
	cl, _ := dial(t, s, 1, 2*time.Second)
	h := s.Unit(1).HoldingRegisters()

	read := func() (int32, float32, uint16, int16, bool, uint16) {
		t.Helper()
		b, err := cl.ReadHoldingRegisters(0, 7)
		if err != nil {
			t.Fatal(err)
		}
		c, err := cl.ReadCoils(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		return int32(fromWire(b[0:4], CDAB)), math.Float32frombits(uint32(fromWire(b[4:8], ABCD))),
			binary.BigEndian.Uint16(b[8:]), int16(binary.BigEndian.Uint16(b[10:])), c[0] == 1,
			binary.BigEndian.Uint16(b[12:])
	}
	cnt, sine, wrap, static, coil, bits := read()
	if cnt != 1000 || sine != 20 || wrap != 65534 || static != -7 || coil || bits != 0 {
		t.Errorf("tick 0: %d %v %d %d %v %#x", cnt, sine, wrap, static, coil, bits)
	}
	s.UpdateSignals()
	cnt, sine, wrap, _, coil, bits = read()
	if cnt != 1005 || math.Abs(float64(sine)-22) > 1e-5 || wrap != 65535 || !coil || bits != 4 {
		t.Errorf("tick 1: %d %v %d %v %#x", cnt, sine, wrap, coil, bits)
	}
	s.UpdateSignals()
	s.UpdateSignals()
	cnt, sine, wrap, _, coil, _ = read()
	if cnt != 1015 || math.Abs(float64(sine)-18) > 1e-5 || wrap != 1 || !coil {
		t.Errorf("tick 3: %d %v %d %v", cnt, sine, wrap, coil)
	}
	// A static signal is written once: a client write sticks.
	if _, err := cl.WriteSingleRegister(5, 99); err != nil {
		t.Fatal(err)
	}
	s.UpdateSignals()
	if got := h.Int16(5, ABCD); got != 99 {
		t.Errorf("static after client write = %d", got)
	}
	// Applying a fixed value stops the counter.
	if err := s.Apply(1, RegisterSpec{Area: Holding, Address: 0, Type: Int32, Order: CDAB, Value: 7}); err != nil {
		t.Fatal(err)
	}
	s.UpdateSignals()
	if got := h.Int32(0, CDAB); got != 7 {
		t.Errorf("counter replaced by value: %d", got)
	}
	if err := s.Apply(1, RegisterSpec{Area: Coil, Address: 0, Type: Float32}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("float32 in a coil: %v", err)
	}
}

// TestSignalTicker checks the background updates without sleeping: it
// reads until the counter moves.
func TestSignalTicker(t *testing.T) {
	s := start(t, Config{Tick: 5 * time.Millisecond, Units: []UnitConfig{{ID: 1, Registers: []RegisterSpec{
		{Area: Input, Address: 0, Signal: &Signal{Kind: Counter}},
	}}}})
	cl, _ := dial(t, s, 1, 2*time.Second)
	ctx := testCtx(t)
	for ctx.Err() == nil {
		b, err := cl.ReadInputRegisters(0, 1)
		if err != nil {
			t.Fatal(err)
		}
		if binary.BigEndian.Uint16(b) >= 2 {
			return
		}
	}
	t.Fatal("counter did not move")
}

// TestConcurrentUse exercises the bank, signals, faults and several
// clients at once for the race detector.
func TestConcurrentUse(t *testing.T) {
	s := start(t, Config{Units: []UnitConfig{{ID: 1, Registers: []RegisterSpec{
		{Area: Holding, Address: 0, Type: Float64, Signal: &Signal{Kind: Sine, Amplitude: 1}},
	}}}})
	var wg sync.WaitGroup
	for i := range 4 {
		cl, _ := dial(t, s, 1, 2*time.Second)
		wg.Go(func() {
			for j := range 100 {
				if _, err := cl.ReadHoldingRegisters(0, 100); err != nil {
					t.Error(err)
					return
				}
				if _, err := cl.WriteSingleRegister(uint16(200+i), uint16(j)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 100 {
		s.UpdateSignals()
		s.Unit(1).HoldingRegisters().SetFloat32(300, 1, CDAB)
		remove := s.AddException(ExceptionRule{Unit: 1, First: 1000, Last: 1001, Code: ServerDeviceBusy})
		remove()
		_ = s.Counters()
	}
	wg.Wait()
	if got := s.Counters().ByFunction[3]; got != 400 {
		t.Errorf("FC 3 count = %d, want 400", got)
	}
}

func TestDemoConfig(t *testing.T) {
	cfg := DemoConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := start(t, cfg)
	cl, _ := dial(t, s, 1, 2*time.Second)
	b, err := cl.ReadHoldingRegisters(0, 18)
	if err != nil {
		t.Fatal(err)
	}
	temp := math.Float32frombits(uint32(fromWire(b[0:4], ABCD)))
	count := int32(fromWire(b[4:8], CDAB))
	status := binary.BigEndian.Uint16(b[8:])
	setpoint := binary.BigEndian.Uint16(b[10:])
	serial := s.Unit(1).HoldingRegisters().String(10, 8, ABCD)
	if temp != 21.5 || count != 1000 || status != 5 || setpoint != 225 || serial != "FRY-0001-A7" {
		t.Errorf("demo holding: %v %d %#x %d %q", temp, count, status, setpoint, serial)
	}
	b, err = cl.ReadInputRegisters(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if rpm, p := binary.BigEndian.Uint16(b), math.Float32frombits(uint32(fromWire(b[2:6], DCBA))); rpm != 1450 || p != 4.2 {
		t.Errorf("demo input: %d %v", rpm, p)
	}
	s.UpdateSignals()
	if got := s.Unit(1).HoldingRegisters().Int32(2, CDAB); got != 1001 {
		t.Errorf("parts_count after a tick = %d", got)
	}
	if c, _ := cl.ReadCoils(0, 2); !slices.Equal(c, []byte{1}) {
		t.Errorf("coils = % x", c)
	}
}

func TestCloseAndRestartAfterClose(t *testing.T) {
	s, err := Start(testCtx(t), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Restart(testCtx(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("Restart after Close = %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(testCtx(t), Config{Addr: "256.0.0.1:0"}); err == nil {
		t.Error("bad address: no error")
	}
	_, err := Start(testCtx(t), Config{Units: []UnitConfig{{ID: 1, Registers: []RegisterSpec{{Area: "nope"}}}}})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("bad config: %v", err)
	}
}
