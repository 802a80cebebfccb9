package modbus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mb "github.com/goburrow/modbus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	sim "github.com/ferry-gateway/ferry/sim/modbus"
)

const wait = 10 * time.Second // deadline for events that take milliseconds

const demoTags = `
type: modbus
poll_interval: 20ms
timeout: 200ms
devices:
  - name: demo
    endpoint: tcp://{addr}
    tags:
      - {name: temperature, address: 40001, type: float32}
      - {name: parts, address: 40003, type: int32, byte_order: CDAB}
      - {name: status, address: 40005}
      - {name: serial, address: 40011, type: string, length: 16}
      - {name: pressure, address: 30002, type: float32, byte_order: DCBA}
      - {name: pump, address: 00001}
      - {name: door, address: 10001}
`

func TestConformance(t *testing.T) {
	var cur *sim.Server
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector {
			cur = startSim(t, sim.DemoConfig())
			return mustDecode(t, cur.Addr(), demoTags)
		},
		Restart: func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), wait)
			defer cancel()
			if err := cur.Restart(ctx); err != nil {
				t.Fatal(err)
			}
		},
		Malformed: func(t *testing.T) { cur.MalformNext(sim.TruncatedFrame) },
	})
}

// TestDemoValues reads the simulator's demo device.
func TestDemoValues(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	r := start(t, s, demoTags)
	b := r.until(t, wait, allGood)
	got := byTag(b)
	check := func(tag string, want bus.Value) {
		t.Helper()
		if rec, ok := got[tag]; !ok || !rec.Value.Equal(want) {
			t.Errorf("%s = %v, want %v", tag, rec.Value, want)
		}
	}
	check("parts", bus.Long(1000))
	check("status", bus.Long(5))
	check("serial", bus.String("FRY-0001-A7"))
	check("pressure", bus.Double(float64(float32(4.2))))
	check("pump", bus.Bool(true))
	check("door", bus.Bool(true))
	for _, rec := range b.Records {
		if rec.Device != "demo" || rec.SourceTime == 0 || rec.Source != "mb" {
			t.Errorf("record lacks device, source or time: %+v", rec)
		}
	}
}

// TestTypesAndOrders: for every type and every byte/word order, the
// simulator holds a known value and the record carries it.
func TestTypesAndOrders(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 3}}})
	h := s.Unit(3).HoldingRegisters()
	var tags strings.Builder
	want := map[string]bus.Value{}
	addr := 0
	add := func(name, typ, order string, n int, extra string, v bus.Value) {
		fmt.Fprintf(&tags, "      - {name: %s, area: holding, address: %d, type: %s, byte_order: %s%s}\n", name, addr, typ, order, extra)
		want[name] = v
		addr += n
	}
	for _, o := range []sim.Order{sim.ABCD, sim.BADC, sim.CDAB, sim.DCBA} {
		p := string(o) + "/"
		h.SetInt16(uint16(addr), -12345, o)
		add(p+"int16", "int16", string(o), 1, "", bus.Long(-12345))
		h.SetUint16(uint16(addr), 54321, o)
		add(p+"uint16", "uint16", string(o), 1, "", bus.Long(54321))
		h.SetInt32(uint16(addr), -123456789, o)
		add(p+"int32", "int32", string(o), 2, "", bus.Long(-123456789))
		h.SetUint32(uint16(addr), 3456789012, o)
		add(p+"uint32", "uint32", string(o), 2, "", bus.Long(3456789012))
		h.SetInt64(uint16(addr), -1234567890123456789, o)
		add(p+"int64", "int64", string(o), 4, "", bus.Long(-1234567890123456789))
		h.SetUint64(uint16(addr), 1234567890123456789, o)
		add(p+"uint64", "uint64", string(o), 4, "", bus.Long(1234567890123456789))
		h.SetUint64(uint16(addr), 12345678901234567890, o)
		add(p+"uint64big", "uint64", string(o), 4, "", bus.Double(12345678901234567890))
		h.SetFloat32(uint16(addr), 1234.5678, o)
		add(p+"float32", "float32", string(o), 2, "", bus.Double(float64(float32(1234.5678))))
		h.SetFloat64(uint16(addr), -9876.54321, o)
		add(p+"float64", "float64", string(o), 4, "", bus.Double(-9876.54321))
		h.SetString(uint16(addr), "ABC-123", 4, o)
		add(p+"string", "string", string(o), 4, ", length: 8", bus.String("ABC-123"))
		h.SetUint16(uint16(addr), 0x0102, o) // bit 1 set, and bit 8 in the wire's first byte
		add(p+"bit1", "bit", string(o), 0, ", bit: 1", bus.Bool(true))
		add(p+"bit8", "bit", string(o), 0, ", bit: 8", bus.Bool(true))
		add(p+"bit0", "bit", string(o), 1, ", bit: 0", bus.Bool(false))
		h.SetInt16(uint16(addr), -250, o)
		scale := 0.1
		add(p+"scaled", "int16", string(o), 1, ", scale: 0.1, offset: 100", bus.Double(-250*scale+100))
	}
	u := s.Unit(3)
	u.Coils().Set(7, true)
	u.DiscreteInputs().Set(9, true)
	u.InputRegisters().SetFloat32(11, -0.5, sim.CDAB)
	fmt.Fprintf(&tags, "      - {name: coil, area: coil, address: 7}\n      - {name: coil_off, area: coil, address: 8}\n")
	fmt.Fprintf(&tags, "      - {name: discrete, area: discrete, address: 9, type: bool}\n")
	fmt.Fprintf(&tags, "      - {name: input, area: input, address: 11, type: float32, byte_order: CDAB}\n")
	want["coil"], want["coil_off"], want["discrete"], want["input"] = bus.Bool(true), bus.Bool(false), bus.Bool(true), bus.Double(-0.5)

	r := start(t, s, `
type: modbus
poll_interval: 1h
devices:
  - name: d
    endpoint: tcp://{addr}
    unit: 3
    tags:
`+tags.String())
	got := byTag(r.until(t, wait, allGood))
	for name, w := range want {
		rec, ok := got[name]
		switch {
		case !ok:
			t.Errorf("%s: no record", name)
		case !rec.Value.Equal(w):
			t.Errorf("%s = %v (%s), want %v (%s)", name, rec.Value, rec.Value.Kind, w, w.Kind)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d records, want %d", len(got), len(want))
	}
}

// TestAddressing: 0-based addresses with an area and 1-based Modicon
// addresses (5 and 6 digits) reach the same registers, and a profile with
// coils_from_zero shifts the Modicon coil numbers.
func TestAddressing(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	u := s.Unit(1)
	u.HoldingRegisters().Set(0, 100, 101)
	u.HoldingRegisters().Set(0x10, 116)
	u.HoldingRegisters().Set(9999, 42)
	u.InputRegisters().Set(0, 300)
	u.Coils().Set(0, true, false)
	u.DiscreteInputs().Set(0, false, true)
	r := start(t, s, `
type: modbus
poll_interval: 1h
profiles:
  zero: {coils_from_zero: true}
devices:
  - name: std
    endpoint: tcp://{addr}
    tags:
      - {name: h0, area: holding, address: 0}
      - {name: m40001, address: 40001}
      - {name: m400002, address: 400002}
      - {name: hex, area: holding, address: 0x10}
      - {name: m410000, address: 410000}
      - {name: i0, address: 30001}
      - {name: c0, address: 00001}
      - {name: d1, address: 10002}
  - name: zero
    endpoint: tcp://{addr}
    profile: zero
    tags:
      - {name: c0, address: 00000}
      - {name: c1, address: 00001}
      - {name: d1, address: 10001}
      - {name: h0, address: 40001}
`)
	want := map[string]map[string]bus.Value{
		"std": {"h0": bus.Long(100), "m40001": bus.Long(100), "m400002": bus.Long(101), "hex": bus.Long(116),
			"m410000": bus.Long(42), "i0": bus.Long(300), "c0": bus.Bool(true), "d1": bus.Bool(true)},
		"zero": {"c0": bus.Bool(true), "c1": bus.Bool(false), "d1": bus.Bool(true), "h0": bus.Long(100)},
	}
	for len(want) > 0 {
		b := r.until(t, wait, allGood)
		dev := b.Records[0].Device
		for tag, w := range want[dev] {
			if got := byTag(b)[tag]; !got.Value.Equal(w) {
				t.Errorf("%s/%s = %v, want %v", dev, tag, got.Value, w)
			}
		}
		delete(want, dev)
	}
}

func contiguous(n, start int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "      - {name: r%d, area: holding, address: %d}\n", start+i, start+i)
	}
	return b.String()
}

// TestCoalescing: 200 contiguous holding registers take two requests; gaps
// are read through up to max_gap and no further.
func TestCoalescing(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	r := start(t, s, `
type: modbus
poll_interval: 1h
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
`+contiguous(200, 0))
	if b := r.until(t, wait, allGood); len(b.Records) != 200 {
		t.Fatalf("%d records, want 200", len(b.Records))
	}
	if n := s.Counters().ByFunction[3]; n != 2 {
		t.Fatalf("200 contiguous registers took %d requests, want 2", n)
	}

	for _, tc := range []struct {
		gap, want int
	}{{0, 3}, {4, 2}, {9, 2}, {10, 1}} {
		s.ResetCounters()
		r := start(t, s, fmt.Sprintf(`
type: modbus
poll_interval: 1h
max_gap: %d
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: a, area: holding, address: 0, type: float32}
      - {name: b, area: holding, address: 6}
      - {name: c, area: holding, address: 17, type: int32}
`, tc.gap))
		r.until(t, wait, allGood)
		if n := s.Counters().ByFunction[3]; n != uint64(tc.want) {
			t.Errorf("max_gap %d (gaps of 4 and 10): %d requests, want %d", tc.gap, n, tc.want)
		}
	}
}

// TestExceptions: an exception reply makes the tags of that read BAD with
// the exception code as status, is counted, and leaves the rest GOOD.
func TestExceptions(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	s.AddException(sim.ExceptionRule{Unit: 1, Area: sim.Input, First: 1, Last: 2, Code: sim.ServerDeviceBusy})
	r := start(t, s, demoTags)
	b := r.until(t, wait, func(b *bus.Batch) bool { return len(b.Records) == 7 })
	got := byTag(b)
	if rec := got["pressure"]; rec.Quality != bus.Bad || rec.Status != 6 || !strings.Contains(rec.Attrs["error"], "server device busy") {
		t.Errorf("pressure = %+v, want BAD with status 6", rec)
	}
	for _, tag := range []string{"temperature", "parts", "serial", "pump", "door"} {
		if got[tag].Quality != bus.Good {
			t.Errorf("%s = %+v, want GOOD", tag, got[tag])
		}
	}
	if n := r.metric(t, "ferry_modbus_exceptions_total", map[string]string{"device": "demo", "code": "6"}); n < 1 {
		t.Errorf("exceptions_total{code=6} = %v", n)
	}
	if r.Env.State().Phase() != connectors.PhaseUp {
		t.Errorf("an exception reply must not mark the connector down: %v", r.Env.State().Phase())
	}
}

// TestSilentDevice: a device that stops answering makes its tags BAD with
// the reason, and GOOD again when it answers, without a restart.
func TestSilentDevice(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	r := start(t, s, strings.Replace(demoTags, "timeout: 200ms", "timeout: 50ms\nretries: 1\nmax_backoff: 100ms", 1))
	r.until(t, wait, allGood)
	s.SetSilent(true)
	b := r.until(t, wait, allBad)
	rec := b.Records[0]
	if rec.Status != StatusNoAnswer || !strings.Contains(rec.Attrs["error"], "no answer") {
		t.Errorf("silent device: %+v, want status %#x and the reason", rec, StatusNoAnswer)
	}
	if ph := r.Env.State().Phase(); ph != connectors.PhaseDown {
		t.Errorf("phase %s while the device is silent, want down", ph)
	}
	s.SetSilent(false)
	r.until(t, wait, allGood)
	if ph := r.Env.State().Phase(); ph != connectors.PhaseUp {
		t.Errorf("phase %s after the device answers again, want up", ph)
	}
	if n := r.metric(t, "ferry_modbus_failures_total", map[string]string{"reason": "no_answer"}); n < 2 {
		t.Errorf("failures_total{no_answer} = %v, want at least 2 (one try and one retry)", n)
	}
}

// TestDeviceDownAtStart: an endpoint nobody listens on is not a failed
// start; its tags are BAD (not connected) until it appears.
func TestDeviceDownAtStart(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	addr := s.Addr()
	_ = s.Close()
	m := mustDecode(t, addr, strings.Replace(demoTags, "timeout: 200ms", "timeout: 50ms\nmax_backoff: 50ms", 1))
	r := newRig(t, m, "")
	b := r.until(t, wait, allBad)
	if b.Records[0].Status != StatusNotConnected {
		t.Errorf("status %#x, want %#x", b.Records[0].Status, StatusNotConnected)
	}
	cfg := sim.DemoConfig()
	cfg.Addr = addr
	startSim(t, cfg)
	r.until(t, wait, allGood)
}

// TestIssue64 shows goburrow/modbus v0.1.0 falling out of step after one
// late reply, and the connector recovering within the same poll cycle.
func TestIssue64(t *testing.T) {
	s := startSim(t, sim.DemoConfig())

	t.Run("goburrow alone stays out of step", func(t *testing.T) {
		h := mb.NewTCPClientHandler(s.Addr())
		h.Timeout, h.SlaveId = 100*time.Millisecond, 1
		defer h.Close()
		c := mb.NewClient(h)
		if _, err := c.ReadHoldingRegisters(0, 2); err != nil {
			t.Fatal(err)
		}
		s.AnswerLate(150 * time.Millisecond)
		if _, err := c.ReadHoldingRegisters(0, 2); err == nil {
			t.Fatal("the late reply arrived in time")
		}
		// The stale reply now answers the next request.
		_, err := c.ReadHoldingRegisters(4, 1)
		if err == nil || !strings.Contains(err.Error(), "transaction id") {
			t.Fatalf("want a transaction-id mismatch, got %v", err)
		}
	})

	for _, retries := range []int{1, 0} {
		t.Run(fmt.Sprintf("connector with retries %d", retries), func(t *testing.T) {
			r := start(t, s, fmt.Sprintf(`
type: modbus
poll_interval: 1h
timeout: 100ms
retries: %d
max_backoff: 1ms
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: status, address: 40005}
      - {name: parts, address: 40003, type: int32, byte_order: CDAB}
`, retries))
			r.until(t, wait, allGood)
			conns := s.Counters().Connections
			s.AnswerLate(300 * time.Millisecond)
			r.poke("d")
			b := r.next(t, wait)
			if retries == 0 {
				// No retry: this cycle is BAD (no answer); the next one,
				// on a fresh connection, is GOOD.
				if !allBad(b) || b.Records[0].Status != StatusNoAnswer {
					t.Fatalf("cycle with the late reply: %+v", b.Records)
				}
				r.poke("d")
				b = r.next(t, wait)
			}
			if !allGood(b) {
				t.Fatalf("data did not flow again within one poll cycle: %+v", b.Records)
			}
			if got := byTag(b)["status"].Value; !got.Equal(bus.Long(5)) {
				t.Errorf("status = %v: a stale reply was taken for the answer", got)
			}
			if n := s.Counters().Connections - conns; n != 1 {
				t.Errorf("%d new connections, want 1 (closed after the timeout, reopened)", n)
			}
			if n := r.metric(t, "ferry_modbus_reconnects_total", nil); n != 1 {
				t.Errorf("reconnects_total = %v, want 1", n)
			}
			r.poke("d")
			if b := r.next(t, wait); !allGood(b) {
				t.Fatalf("next cycle: %+v", b.Records)
			}
		})
	}
}

// TestMalformedReplies: a short PDU, a truncated frame or a wrong
// transaction ID never panics and data flows again on the next attempt.
func TestMalformedReplies(t *testing.T) {
	s := startSim(t, sim.DemoConfig())
	r := start(t, s, strings.Replace(demoTags, "poll_interval: 20ms", "poll_interval: 1h\nretries: 0\nmax_backoff: 1ms", 1))
	r.until(t, wait, allGood)
	for _, m := range []sim.Malformation{sim.ShortPDU, sim.TruncatedFrame, sim.WrongTransactionID} {
		s.MalformNext(m)
		r.poke("demo")
		b := r.next(t, wait)
		if allGood(b) {
			t.Errorf("%v: no record went BAD", m)
		}
		for _, rec := range b.Records {
			if rec.Quality == bus.Bad && rec.Status != StatusMalformed && rec.Status != StatusNotConnected {
				t.Errorf("%v: %s has status %#x", m, rec.Tag, rec.Status)
			}
		}
		if b.Len() != 7 {
			t.Errorf("%v: %d records, want all 7", m, b.Len())
		}
		r.poke("demo")
		b = r.next(t, wait)
		if !allGood(b) || b.Len() != 7 {
			t.Errorf("%v: next cycle not GOOD: %+v", m, b.Records)
		}
	}
}

// TestLearnedLengthLimit: a device that rejects reads longer than 50
// registers: the first cycle still reads every tag, ferry learns the limit
// exactly, keeps it in the data dir, and a restarted connector reads with
// the fewest requests from its first cycle on.
func TestLearnedLengthLimit(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1, MaxRegisters: 50}}})
	for i := range 120 {
		s.Unit(1).HoldingRegisters().Set(uint16(i), uint16(1000+i))
	}
	text := `
type: modbus
poll_interval: 1h
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
` + contiguous(120, 0)
	dir := t.TempDir()
	r := newRig(t, mustDecode(t, s.Addr(), text), dir)
	b := r.next(t, wait)
	if !allGood(b) || b.Len() != 120 {
		t.Fatalf("learning cycle: %d records, all GOOD %v", b.Len(), allGood(b))
	}
	if got := byTag(b)["r77"].Value; !got.Equal(bus.Long(1077)) {
		t.Errorf("r77 = %v", got)
	}
	data, err := os.ReadFile(filepath.Join(dir, "mb", LearnedFile))
	if err != nil || !strings.Contains(string(data), `"max_count": 50`) {
		t.Fatalf("learned file: %v\n%s", err, data)
	}
	s.ResetCounters()
	r.poke("d")
	r.next(t, wait)
	if c := s.Counters(); c.ByFunction[3] != 3 || c.Exceptions != 0 {
		t.Errorf("after learning: %d requests, %d exceptions; want 3 and 0", c.ByFunction[3], c.Exceptions)
	}
	r.stop()

	s.ResetCounters()
	r = newRig(t, mustDecode(t, s.Addr(), text), dir)
	if b := r.next(t, wait); !allGood(b) {
		t.Fatal("restart: not GOOD")
	}
	if c := s.Counters(); c.ByFunction[3] != 3 || c.Exceptions != 0 {
		t.Errorf("after restart: %d requests, %d exceptions; want 3 and 0 (nothing relearned)", c.ByFunction[3], c.Exceptions)
	}
	plans, err := r.m.Plan(filepath.Join(dir, "mb", LearnedFile))
	if err != nil || len(plans[0].Requests) != 3 || len(plans[0].Learned) != 1 {
		t.Errorf("plan with learned limits: %+v, %v", plans, err)
	}
}

// TestLearnedAddressHoles: a gap the device rejects is no longer read
// through, and a tag the device rejects on its own is read alone (BAD with
// code 2) while the rest keeps its values.
func TestLearnedAddressHoles(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	s.AddException(sim.ExceptionRule{Unit: 1, Area: sim.Holding, First: 10, Last: 19, Code: sim.IllegalDataAddress})
	s.AddException(sim.ExceptionRule{Unit: 1, Area: sim.Holding, First: 40, Last: 40, Code: sim.IllegalDataAddress})
	r := start(t, s, `
type: modbus
poll_interval: 1h
max_gap: 10
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
`+contiguous(10, 0)+contiguous(10, 20)+contiguous(10, 31))
	b := r.next(t, wait)
	got := byTag(b)
	for tag, rec := range got {
		if (tag == "r40") != (rec.Quality == bus.Bad) {
			t.Errorf("%s: %v status %d", tag, rec.Quality, rec.Status)
		}
	}
	if rec := got["r40"]; rec.Status != 2 || b.Len() != 30 {
		t.Fatalf("r40 = %+v; %d records", rec, b.Len())
	}
	s.ResetCounters()
	r.poke("d")
	b = r.next(t, wait)
	c := s.Counters()
	// 0-9 | 20-39 (the hole 10-19 is not read through) | 40 alone.
	if c.ByFunction[3] != 3 || c.Exceptions != 1 || b.Len() != 30 {
		t.Errorf("after learning: %d requests, %d exceptions, %d records; want 3, 1, 30", c.ByFunction[3], c.Exceptions, b.Len())
	}
}

// TestWriteBack writes every writable type and reads it back, from the
// simulator's bank and from the next record.
func TestWriteBack(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	h := s.Unit(1).HoldingRegisters()
	r := start(t, s, `
type: modbus
poll_interval: 1h
devices:
  - name: d
    endpoint: tcp://{addr}
    byte_order: CDAB
    tags:
      - {name: coil, area: coil, address: 3, writable: true}
      - {name: bit, area: holding, address: 0, type: bit, bit: 9, writable: true}
      - {name: int16, area: holding, address: 1, type: int16, writable: true}
      - {name: uint16, area: holding, address: 2, type: uint16, byte_order: BADC, writable: true}
      - {name: int32, area: holding, address: 3, type: int32, writable: true}
      - {name: uint32, area: holding, address: 5, type: uint32, byte_order: DCBA, writable: true}
      - {name: int64, area: holding, address: 7, type: int64, writable: true}
      - {name: uint64, area: holding, address: 11, type: uint64, byte_order: ABCD, writable: true}
      - {name: float32, area: holding, address: 15, type: float32, writable: true}
      - {name: float64, area: holding, address: 17, type: float64, byte_order: BADC, writable: true}
      - {name: string, area: holding, address: 21, type: string, length: 10, writable: true}
      - {name: scaled, area: holding, address: 26, type: uint16, scale: 0.1, offset: -10, writable: true}
      - {name: readonly, area: holding, address: 27}
      - {name: input, area: input, address: 0}
`)
	r.until(t, wait, allGood)
	h.Set(0, 0x0001) // the bit write must keep bit 0
	for _, w := range []struct {
		tag   string
		v     bus.Value
		check func() bool
		read  bus.Value
	}{
		{"coil", bus.Bool(true), func() bool { return s.Unit(1).Coils().Bool(3) }, bus.Bool(true)},
		{"bit", bus.Bool(true), func() bool { return h.Get(0, 1)[0] == 0x0201 }, bus.Bool(true)},
		{"int16", bus.Long(-2000), func() bool { return h.Int16(1, sim.CDAB) == -2000 }, bus.Long(-2000)},
		{"uint16", bus.Long(65000), func() bool { return h.Uint16(2, sim.BADC) == 65000 }, bus.Long(65000)},
		{"int32", bus.Long(-70000), func() bool { return h.Int32(3, sim.CDAB) == -70000 }, bus.Long(-70000)},
		{"uint32", bus.Double(4000000000), func() bool { return h.Uint32(5, sim.DCBA) == 4000000000 }, bus.Long(4000000000)},
		{"int64", bus.Long(-1 << 60), func() bool { return h.Int64(7, sim.CDAB) == -1<<60 }, bus.Long(-1 << 60)},
		{"uint64", bus.Long(math.MaxInt64), func() bool { return h.Uint64(11, sim.ABCD) == math.MaxInt64 }, bus.Long(math.MaxInt64)},
		{"float32", bus.Double(-1.25), func() bool { return h.Float32(15, sim.CDAB) == -1.25 }, bus.Double(-1.25)},
		{"float64", bus.Double(math.Pi), func() bool { return h.Float64(17, sim.BADC) == math.Pi }, bus.Double(math.Pi)},
		{"string", bus.String("LOT-42"), func() bool { return h.String(21, 5, sim.CDAB) == "LOT-42" }, bus.String("LOT-42")},
		{"scaled", bus.Double(12.5), func() bool { return h.Uint16(26, sim.CDAB) == 225 }, bus.Double(12.5)},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		err := r.m.WriteTag(ctx, "d", w.tag, w.v)
		cancel()
		if err != nil {
			t.Errorf("write %s: %v", w.tag, err)
			continue
		}
		if !w.check() {
			t.Errorf("write %s = %v: not in the device", w.tag, w.v)
		}
		// The write makes the device poll at once; the record carries it.
		b := r.until(t, wait, func(b *bus.Batch) bool { _, ok := byTag(b)[w.tag]; return ok })
		if got := byTag(b)[w.tag].Value; math.Abs(toF(got)-toF(w.read)) > 1e-9 || got.Kind != w.read.Kind {
			t.Errorf("%s read back as %v (%s), want %v", w.tag, got, got.Kind, w.read)
		}
	}
	if got := h.Uint16(2, sim.BADC); got != 65000 {
		t.Errorf("later writes changed uint16: %d", got)
	}

	ctx := t.Context()
	for _, e := range []struct {
		dev, tag string
		v        bus.Value
		want     error
	}{
		{"d", "nope", bus.Long(1), connectors.ErrUnknownTag},
		{"x", "int16", bus.Long(1), connectors.ErrUnknownTag},
		{"d", "readonly", bus.Long(1), connectors.ErrNotWritable},
		{"d", "input", bus.Long(1), connectors.ErrNotWritable},
		{"d", "int16", bus.Long(40000), ErrInvalidValue},
		{"d", "uint16", bus.Long(-1), ErrInvalidValue},
		{"d", "scaled", bus.Double(7000), ErrInvalidValue},
		{"d", "coil", bus.Long(2), ErrInvalidValue},
		{"d", "string", bus.String("much too long"), ErrInvalidValue},
		{"d", "float32", bus.String("1.5"), ErrInvalidValue},
	} {
		err := r.m.WriteTag(ctx, e.dev, e.tag, e.v)
		if !errors.Is(err, e.want) {
			t.Errorf("write %s/%s = %v: got %v, want %v", e.dev, e.tag, e.v, err, e.want)
		}
		// ferry's own checks stopped it before any request: a command
		// result says refused (issue 15).
		if st := command.NewResult(&command.Command{}, err).Status; st != command.StatusRefused {
			t.Errorf("write %s/%s = %v: command status %s, want refused", e.dev, e.tag, e.v, st)
		}
	}
	s.AddException(sim.ExceptionRule{Unit: 1, Area: sim.Holding, First: 1, Last: 1, Code: sim.IllegalDataValue, Count: 1})
	err := r.m.WriteTag(ctx, "d", "int16", bus.Long(1))
	var ee *ExceptionError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(err.Error(), "d: write holding 1: exception 0x03 (illegal data value)") {
		t.Errorf("refused write: %v", err)
	}
	// The device said no: failed.
	if st := command.NewResult(&command.Command{}, err).Status; st != command.StatusFailed {
		t.Errorf("exception from the device: command status %s, want failed", st)
	}
	if n := r.metric(t, "ferry_modbus_writes_total", map[string]string{"result": "ok"}); n != 12 {
		t.Errorf("writes_total{ok} = %v, want 12", n)
	}
}

func toF(v bus.Value) float64 {
	if v.Kind == bus.KindString {
		return float64(len(v.Str()))
	}
	f, _ := v.Float()
	return f
}

// TestReportByException: only changed values are emitted, and unchanged
// ones again once the heartbeat is due.
func TestReportByException(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	h := s.Unit(1).HoldingRegisters()
	text := `
type: modbus
poll_interval: 5ms
report_by_exception: true
heartbeat: %s
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
` + contiguous(5, 0)
	r := start(t, s, fmt.Sprintf(text, "1h"))
	if b := r.next(t, wait); b.Len() != 5 {
		t.Fatalf("first cycle: %d records, want all 5", b.Len())
	}
	h.Set(3, 77)
	b := r.next(t, wait)
	if b.Len() != 1 || b.Records[0].Tag != "r3" || !b.Records[0].Value.Equal(bus.Long(77)) {
		t.Fatalf("after one change: %+v", b.Records)
	}
	r.stop()

	r = start(t, s, fmt.Sprintf(text, "60ms"))
	last := map[string]int64{}
	for _, rec := range r.next(t, wait).Records {
		last[rec.Tag] = rec.SourceTime
	}
	for range 3 {
		b := r.next(t, wait)
		for _, rec := range b.Records {
			if d := time.Duration(rec.SourceTime - last[rec.Tag]); d < 60*time.Millisecond {
				t.Errorf("%s re-sent unchanged after %v, before the heartbeat", rec.Tag, d)
			}
			last[rec.Tag] = rec.SourceTime
		}
	}
}

// TestSharedEndpoint: devices behind one endpoint share one connection.
func TestSharedEndpoint(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}, {ID: 2}, {ID: 3}}})
	for id := range 3 {
		s.Unit(uint8(id+1)).HoldingRegisters().Set(0, uint16(10*(id+1)))
	}
	var devs strings.Builder
	for id := 1; id <= 3; id++ {
		fmt.Fprintf(&devs, "  - {name: u%d, endpoint: tcp://{addr}, unit: %d, tags: [{name: v, address: 40001}]}\n", id, id)
	}
	r := start(t, s, "type: modbus\npoll_interval: 1h\ndevices:\n"+devs.String())
	seen := map[string]bool{}
	for len(seen) < 3 {
		b := r.until(t, wait, allGood)
		dev := b.Records[0].Device
		want := bus.Long(int64(10 * (dev[1] - '0')))
		if !b.Records[0].Value.Equal(want) {
			t.Errorf("%s = %v, want %v", dev, b.Records[0].Value, want)
		}
		seen[dev] = true
	}
	if n := s.Counters().Connections; n != 1 {
		t.Errorf("%d connections for 3 devices on one endpoint, want 1", n)
	}
}
