package modbus

// Tests of issue 19 (protocol depth, Modbus section): float16 and BCD,
// pacing, FC 15/16 single writes and read-back, UDP, poll groups, CSV
// import and per-device diagnostics, each against sim/modbus on loopback.

import (
	"errors"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	sim "github.com/ferry-gateway/ferry/sim/modbus"
)

// TestFloat16Codec: every half-precision pattern decodes and encodes back
// to itself (NaNs to NaN), and values between two halves round to even.
func TestFloat16Codec(t *testing.T) {
	for h := range 1 << 16 {
		f := float16(uint16(h))
		back, ok := toFloat16(f)
		switch {
		case math.IsNaN(f):
			if !ok || !math.IsNaN(float16(back)) {
				t.Fatalf("0x%04X: NaN encodes to 0x%04X", h, back)
			}
		case !ok || back != uint16(h):
			t.Fatalf("0x%04X = %v encodes to 0x%04X (ok %v)", h, f, back, ok)
		}
	}
	for _, c := range []struct {
		f    float64
		want uint16
		ok   bool
	}{
		{1 + 1.0/2048, 0x3C00, true},         // halfway between 1 and the next half: to even
		{1 + 3.0/2048, 0x3C02, true},         // halfway, odd below: up
		{65504, 0x7BFF, true},                // the largest half
		{65520, 0, false},                    // rounds past the largest: out of range
		{math.Ldexp(1, -24), 1, true},        // the smallest subnormal
		{math.Ldexp(1, -26), 0, true},        // below half of it: zero
		{math.Copysign(0, -1), 0x8000, true}, // negative zero keeps its sign
		{math.Inf(-1), 0xFC00, true},         // infinities pass
		{math.Ldexp(1023, -24), 0x03FF, true},
	} {
		got, ok := toFloat16(c.f)
		if got != c.want || ok != c.ok {
			t.Errorf("toFloat16(%v) = 0x%04X, %v; want 0x%04X, %v", c.f, got, ok, c.want, c.ok)
		}
	}
}

// TestFloat16AndBCD: values the simulator holds as float16 and BCD arrive
// decoded; a BCD register with a nibble above 9 is BAD; writes encode.
func TestFloat16AndBCD(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	h := s.Unit(1).HoldingRegisters()
	h.SetFloat16(0, 21.5)
	h.SetFloat16(1, 0.000061035156) // 2^-14, the smallest normal
	h.SetFloat16(2, 65504)
	h.SetBCD16(3, 1234)
	h.SetBCD32(4, 12345678, sim.CDAB)
	h.Set(6, 0x12A4) // not BCD
	h.SetBCD16(7, 9)
	r := start(t, s, `
type: modbus
poll_interval: 1h
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: f16, area: holding, address: 0, type: float16, writable: true}
      - {name: f16small, area: holding, address: 1, type: float16}
      - {name: f16max, area: holding, address: 2, type: float16}
      - {name: bcd16, area: holding, address: 3, type: bcd16, writable: true}
      - {name: bcd32, area: holding, address: 4, type: bcd32, byte_order: CDAB, writable: true}
      - {name: notbcd, area: holding, address: 6, type: bcd16}
      - {name: scaled, area: holding, address: 7, type: bcd16, scale: 0.5}
`)
	b := r.next(t, wait)
	got := byTag(b)
	for tag, want := range map[string]bus.Value{
		"f16": bus.Double(21.5), "f16small": bus.Double(math.Ldexp(1, -14)), "f16max": bus.Double(65504),
		"bcd16": bus.Long(1234), "bcd32": bus.Long(12345678), "scaled": bus.Double(4.5),
	} {
		if rec := got[tag]; rec.Quality != bus.Good || !rec.Value.Equal(want) {
			t.Errorf("%s = %v (%v), want %v", tag, rec.Value, rec.Quality, want)
		}
	}
	if rec := got["notbcd"]; rec.Quality != bus.Bad || rec.Status != StatusBadValue || !strings.Contains(rec.Attrs["error"], "0x12A4") {
		t.Errorf("notbcd = %+v, want BAD with status 0x103 and the registers in attrs.error", rec)
	}
	ctx := t.Context()
	for _, w := range []struct {
		tag   string
		v     bus.Value
		check func() bool
	}{
		{"f16", bus.Double(-2.5), func() bool { return h.Get(0, 1)[0] == 0xC100 }},
		{"bcd16", bus.Long(9876), func() bool { return h.Get(3, 1)[0] == 0x9876 }},
		{"bcd32", bus.Long(87654321), func() bool { r := h.Get(4, 2); return r[0] == 0x4321 && r[1] == 0x8765 }},
	} {
		if err := r.m.WriteTag(ctx, "d", w.tag, w.v); err != nil || !w.check() {
			t.Errorf("write %s = %v: err %v, registers %04X", w.tag, w.v, err, h.Get(0, 6))
		}
	}
	for _, w := range []struct {
		tag string
		v   bus.Value
	}{{"bcd16", bus.Long(10000)}, {"bcd16", bus.Long(-1)}, {"bcd32", bus.Double(1e8)}, {"f16", bus.Double(1e6)}} {
		if err := r.m.WriteTag(ctx, "d", w.tag, w.v); !errors.Is(err, ErrInvalidValue) {
			t.Errorf("write %s = %v: %v, want ErrInvalidValue", w.tag, w.v, err)
		}
	}
}

// TestPacing: the pauses are what the simulator sees between accepting a
// connection and its first request, and between a reply and the next
// request; pause_between_requests comes from the device's profile.
func TestPacing(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	const afterConnect, between = 300 * time.Millisecond, 60 * time.Millisecond
	r := start(t, s, `
type: modbus
poll_interval: 10ms
profiles:
  slow-gateway: {pause_between_requests: 60ms}
devices:
  - name: d
    endpoint: tcp://{addr}
    profile: slow-gateway
    pause_after_connect: 300ms
    tags:
      - {name: a, area: holding, address: 0}
      - {name: b, area: input, address: 0}
`)
	for range 3 {
		r.until(t, wait, allGood)
	}
	c := s.Counters()
	// The simulator's clock starts when it accepts, which can only be
	// later than the client's connect: allow for a slow accept.
	if c.FirstRequestAfter < afterConnect*3/4 {
		t.Errorf("first request %v after the connection, want about %v", c.FirstRequestAfter, afterConnect)
	}
	if c.RequestGap < between {
		t.Errorf("shortest gap between a reply and the next request %v, want at least %v", c.RequestGap, between)
	}
	if c.Requests < 4 {
		t.Errorf("%d requests; the gap needs several", c.Requests)
	}
}

// TestCloseAfterPoll: a gateway that allows one connection serves two
// pollers only when both hang up after each poll.
func TestCloseAfterPoll(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	s.SetMaxConnections(1)
	text := func(close bool) string {
		c := "false"
		if close {
			c = "true"
		}
		return `
type: modbus
poll_interval: 20ms
timeout: 200ms
max_backoff: 50ms
close_after_poll: ` + c + `
devices:
  - {name: d, endpoint: "tcp://{addr}", tags: [{name: a, address: 40001}]}
`
	}
	// Without close_after_poll, the first poller keeps the one connection.
	first := start(t, s, text(false))
	first.until(t, wait, allGood)
	second := start(t, s, text(false))
	second.until(t, wait, allBad)
	if s.Counters().Refused == 0 {
		t.Fatal("the simulator refused no connection: the test shows nothing")
	}
	first.stop()
	second.stop()

	s.ResetCounters()
	a := start(t, s, text(true))
	b := start(t, s, text(true))
	for range 3 {
		a.until(t, wait, allGood)
		b.until(t, wait, allGood)
	}
	c := s.Counters()
	if c.PeakConnections > 1 || c.Connections < 6 {
		t.Errorf("peak %d connections, %d in all; want at most 1 at a time, a new one per poll", c.PeakConnections, c.Connections)
	}
}

// TestSingleWriteFunctions: a device that rejects FC 5 and 6 is written
// with FC 15 and 16 when configured; without, its refusal is the result.
func TestSingleWriteFunctions(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	s.RejectFunction(5, sim.IllegalFunction)
	s.RejectFunction(6, sim.IllegalFunction)
	h := s.Unit(1).HoldingRegisters()
	r := start(t, s, `
type: modbus
poll_interval: 1h
devices:
  - name: new
    endpoint: tcp://{addr}
    single_register_write: fc16
    single_coil_write: fc15
    tags:
      - {name: reg, area: holding, address: 0, writable: true}
      - {name: bit, area: holding, address: 1, type: bit, bit: 3, writable: true}
      - {name: coil, area: coil, address: 2, writable: true}
  - name: old
    endpoint: tcp://{addr}
    tags:
      - {name: reg, area: holding, address: 0, writable: true}
      - {name: coil, area: coil, address: 2, writable: true}
`)
	ctx := t.Context()
	for tag, v := range map[string]bus.Value{"reg": bus.Long(4321), "bit": bus.Bool(true), "coil": bus.Bool(true)} {
		if err := r.m.WriteTag(ctx, "new", tag, v); err != nil {
			t.Errorf("write new/%s: %v", tag, err)
		}
	}
	if h.Get(0, 1)[0] != 4321 || h.Get(1, 1)[0] != 1<<3 || !s.Unit(1).Coils().Bool(2) {
		t.Errorf("device holds %v, coil %v", h.Get(0, 2), s.Unit(1).Coils().Bool(2))
	}
	c := s.Counters()
	if c.ByFunction[16] != 2 || c.ByFunction[15] != 1 || c.ByFunction[6] != 0 || c.ByFunction[5] != 0 {
		t.Errorf("functions used %v, want 16 twice and 15 once", c.ByFunction)
	}
	for _, tag := range []string{"reg", "coil"} {
		var ee *ExceptionError
		if err := r.m.WriteTag(ctx, "old", tag, bus.Long(0)); !errors.As(err, &ee) || ee.Code != 1 {
			t.Errorf("write old/%s with FC 5/6: %v, want exception 1", tag, err)
		}
	}
}

// TestVerifyWrites: a device that confirms a write and keeps its own
// value is found out by the read-back.
func TestVerifyWrites(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	s.IgnoreWrites(1, sim.Holding, 10, 10)
	s.IgnoreWrites(1, sim.Coil, 0, 0)
	s.Unit(1).HoldingRegisters().Set(10, 7)
	r := start(t, s, `
type: modbus
poll_interval: 1h
verify_writes: true
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: stuck, area: holding, address: 10, scale: 0.5, writable: true}
      - {name: fine, area: holding, address: 11, type: float32, writable: true}
      - {name: stuckcoil, area: coil, address: 0, writable: true}
`)
	r.next(t, wait)
	ctx := t.Context()
	err := r.m.WriteTag(ctx, "d", "stuck", bus.Double(50))
	var nk *NotKeptError
	if !errors.Is(err, ErrNotKept) || !errors.As(err, &nk) || nk.Wrote != "50" || nk.Read != "3.5" {
		t.Errorf("write to a register the device does not keep: %v (%+v)", err, nk)
	}
	if err := r.m.WriteTag(ctx, "d", "stuckcoil", bus.Bool(true)); !errors.Is(err, ErrNotKept) {
		t.Errorf("write to a coil the device does not keep: %v", err)
	}
	if err := r.m.WriteTag(ctx, "d", "fine", bus.Double(1.5)); err != nil {
		t.Errorf("write kept: %v", err)
	}
	if n := r.metric(t, "ferry_modbus_writes_total", map[string]string{"result": "not_kept"}); n != 2 {
		t.Errorf("writes_total{not_kept} = %v, want 2", n)
	}
	if d := r.m.Diagnostics().(map[string]DeviceDiagnostics)["d"]; d.Writes != 3 || d.NotKept != 2 {
		t.Errorf("diagnostics writes %d, not kept %d; want 3, 2", d.Writes, d.NotKept)
	}
}

// TestUDP polls the demo device over Modbus UDP, and recovers from an
// answer that came too late.
func TestUDP(t *testing.T) {
	cfg := sim.DemoConfig()
	cfg.UDP = true
	s := startSim(t, cfg)
	m := mustDecode(t, s.UDPAddr(), strings.Replace(demoTags, "tcp://", "udp://", 1))
	r := newRig(t, m, "")
	got := byTag(r.until(t, wait, allGood))
	if !got["serial"].Value.Equal(bus.String("FRY-0001-A7")) || !got["parts"].Value.Equal(bus.Long(1000)) {
		t.Errorf("over UDP: %+v", got)
	}
	if s.Counters().Connections != 0 || s.Counters().Requests == 0 {
		t.Errorf("counters %+v: want requests and no TCP connection", s.Counters())
	}
	// An answer past the 200ms timeout: the retry, on a new socket, gets
	// its own answer in the same cycle, and the late one is never taken
	// for another's.
	s.AnswerLate(250 * time.Millisecond)
	deadline := time.Now().Add(wait)
	for r.m.Diagnostics().(map[string]DeviceDiagnostics)["demo"].Timeouts == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no timeout seen")
		}
		if b := r.next(t, wait); !allGood(b) {
			t.Fatalf("a late answer cost a cycle: %+v", b.Records[0])
		}
	}
	r.until(t, wait, allGood)
}

// TestPollGroups: two groups at different rates, each read on its own;
// `ferry plan` shows one plan per group.
func TestPollGroups(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	text := `
type: modbus
poll_interval: 20ms
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: fast1, area: holding, address: 0}
      - {name: fast2, area: holding, address: 1}
      - {name: slow, area: holding, address: 2, poll_interval: 400ms}
      - {name: same, area: holding, address: 3, poll_interval: 20ms}
`
	m := mustDecode(t, s.Addr(), text)
	plans, err := m.Plan("")
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 || plans[0].PollInterval != "20ms" || plans[0].Tags != 3 || len(plans[0].Requests) != 1 ||
		plans[1].PollInterval != "400ms" || plans[1].Tags != 1 || plans[1].Requests[0].Start != 2 {
		t.Fatalf("plans %+v: want 3 tags in one read every 20ms, the slow one alone every 400ms", plans)
	}
	r := newRig(t, m, "")
	hasSlow := func(b *bus.Batch) bool { _, ok := byTag(b)["slow"]; return ok }
	r.until(t, wait, hasSlow)
	fastOnly := 0
	for {
		b := r.next(t, wait)
		if hasSlow(b) {
			break
		}
		if len(b.Records) != 3 {
			t.Fatalf("a fast cycle emitted %d records, want 3", len(b.Records))
		}
		fastOnly++
	}
	// 400ms / 20ms = 20 on time; a loaded machine may skip some.
	if fastOnly < 2 {
		t.Errorf("%d fast cycles between two slow ones, want several", fastOnly)
	}
	diag := r.m.Diagnostics().(map[string]DeviceDiagnostics)["d"]
	if len(diag.PollGroups) != 2 || diag.PollGroups[1].Interval != "400ms" {
		t.Errorf("diagnostics poll groups %+v", diag.PollGroups)
	}
}

// TestImportCSV imports a PLC export, polls the simulator with it, and
// reports bad rows at their lines.
func TestImportCSV(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 4}}})
	h := s.Unit(4).HoldingRegisters()
	h.SetFloat32(0, 21.5, sim.CDAB)
	h.SetString(10, "LOT-7", 4, sim.ABCD)
	h.SetBCD16(20, 42)
	csvText := "\ufeff# exported from the PLC\n" +
		"Name,Address,Type,Order,Scale,Unit,Writable\n" +
		"oven/temperature,40001,REAL,CDAB,,°C,R\n" +
		"oven/setpoint,holding:5,INT,,0.1,°C,RW\n" +
		"\n" +
		"line/lot,40011,STRING(8),,,,\n" +
		"line/code,40021,bcd16,,,,\n"
	out, err := ImportCSV(strings.NewReader(csvText), "tags.csv", ImportOptions{Device: "press", Endpoint: "tcp://" + s.Addr(), Unit: 4})
	if err != nil {
		t.Fatal(err)
	}
	m := mustDecode(t, "", string(out))
	got := byTag(newRig(t, m, "").until(t, wait, allGood))
	for tag, want := range map[string]bus.Value{
		"oven/temperature": bus.Double(21.5), "oven/setpoint": bus.Double(0), "line/lot": bus.String("LOT-7"), "line/code": bus.Long(42),
	} {
		if !got[tag].Value.Equal(want) {
			t.Errorf("%s = %v, want %v", tag, got[tag].Value, want)
		}
	}
	if got["oven/temperature"].Unit != "°C" || !m.Devices[0].Tags[1].Writable {
		t.Errorf("unit or writable lost: %+v", m.Devices[0].Tags[:2])
	}

	bad := "name;address;type;order;scale;unit;writable\n" + // semicolons, as a German Excel saves
		"ok;40001;uint16;;;;\n" +
		"t1;50001;uint16;;;;\n" +
		"t2;40002;float;;;;\n" +
		"t3;40003;float32;ABDC;;;\n" +
		"t4;40005;uint16;;x;;\n" +
		"ok;40006;uint16;;;;maybe\n" +
		"ok;40007;uint16;;;;\n" +
		";40008\n"
	_, err = ImportCSV(strings.NewReader(bad), "bad.csv", ImportOptions{Device: "d"})
	var rows ImportErrors
	if !errors.As(err, &rows) {
		t.Fatalf("bad rows: %v", err)
	}
	want := []string{
		`bad.csv:3: address: Modicon address 50001 starts with 5`,
		`bad.csv:4: type: unknown type "float"`,
		`bad.csv:5: order: "ABDC" is not one of ABCD, BADC, CDAB, DCBA`,
		`bad.csv:6: scale: "x" is not a number`,
		`bad.csv:7: writable: "maybe" is not one of`,
		`bad.csv:8: name: tag "ok" is defined twice`,
		`bad.csv:9: name: missing tag name`,
	}
	if len(rows) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(rows), len(want), err)
	}
	for i := range min(len(rows), len(want)) {
		if !strings.HasPrefix(rows[i].Error(), want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, rows[i].Error(), want[i])
		}
	}
	for _, c := range []struct{ text, want string }{
		{"", "tags.csv:1: empty file"},
		{"name,adress\n", `tags.csv:1: unknown column "adress"`},
		{"name,address\n", "tags.csv:1: no tags"},
		{"name,address\na,40001,3\n", "tags.csv:2: 3 fields, but the header names 2 columns"},
	} {
		if _, err := ImportCSV(strings.NewReader(c.text), "tags.csv", ImportOptions{Device: "d"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.text, err, c.want)
		}
	}
}

// TestREADMEImportExample keeps the README's CSV example importable into
// the YAML printed next to it.
func TestREADMEImportExample(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	csvText := fenced(t, string(doc), "```csv\n")
	yamlText := fenced(t, string(doc), "```yaml\n# generated by ferry import modbus-csv")
	out, err := ImportCSV(strings.NewReader(csvText), "press.csv", ImportOptions{Device: "press", Endpoint: "tcp://10.0.0.5:502"})
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != yamlText {
		t.Errorf("README's imported YAML differs from what the import gives:\n%s", out)
	}
}

// fenced returns the body of the fenced block that starts with open.
func fenced(t *testing.T, doc, open string) string {
	t.Helper()
	i := strings.Index(doc, open)
	if i < 0 {
		t.Fatalf("README lacks a block starting %q", open)
	}
	body := doc[i+len("```yaml\n"):]
	if strings.HasPrefix(open, "```csv") {
		body = doc[i+len(open):]
	}
	j := strings.Index(body, "```")
	return body[:j]
}

// TestDiagnostics: requests, answers, exceptions by code, timeouts,
// latency and learned limits per device, in the status and in metrics.
func TestDiagnostics(t *testing.T) {
	s := startSim(t, sim.Config{Units: []sim.UnitConfig{{ID: 1}}})
	s.AddException(sim.ExceptionRule{Unit: 1, Area: sim.Holding, First: 5, Last: 5, Code: sim.IllegalDataAddress})
	r := start(t, s, `
type: modbus
poll_interval: 1h
timeout: 100ms
retries: 0
devices:
  - name: d
    endpoint: tcp://{addr}
    tags:
      - {name: a, area: holding, address: 0}
      - {name: rejected, area: holding, address: 5}
      - {name: c, area: holding, address: 8}
`)
	r.next(t, wait) // one cycle: the read of 0-8 is refused and probed
	r.poke("d")
	r.next(t, wait) // a cycle with the learned plan
	s.SetSilent(true)
	r.poke("d")
	r.until(t, wait, allBad)
	s.SetSilent(false)
	d := r.m.Diagnostics().(map[string]DeviceDiagnostics)["d"]
	if d.Requests == 0 || d.Responses == 0 || d.Requests <= d.Responses || d.Timeouts == 0 {
		t.Errorf("requests %d, responses %d, timeouts %d", d.Requests, d.Responses, d.Timeouts)
	}
	if d.Exceptions["2 (illegal data address)"] < 2 {
		t.Errorf("exceptions %v, want code 2 at least twice", d.Exceptions)
	}
	if d.Samples == 0 || d.LatencyP50 <= 0 || d.LatencyP99 < d.LatencyP50 {
		t.Errorf("latency p50 %v, p99 %v over %d", d.LatencyP50, d.LatencyP99, d.Samples)
	}
	if len(d.Learned) == 0 || !strings.Contains(strings.Join(d.Learned, " "), "holding 5") {
		t.Errorf("learned %v, want holding 5 avoided", d.Learned)
	}
	if d.Endpoint != "tcp://"+s.Addr() || d.Unit != 1 {
		t.Errorf("endpoint %q unit %d", d.Endpoint, d.Unit)
	}
	if n := r.metric(t, "ferry_modbus_responses_total", nil); n != float64(d.Responses) {
		t.Errorf("responses_total %v, diagnostics %d", n, d.Responses)
	}
	if n := r.metric(t, "ferry_modbus_learned_avoided_ranges", map[string]string{"area": "holding"}); n != 1 {
		t.Errorf("learned_avoided_ranges{holding} = %v, want 1", n)
	}
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "ferry_modbus_request_duration_seconds" {
			found = f.GetMetric()[0].GetHistogram().GetSampleCount() == d.Responses
		}
	}
	if !found {
		t.Error("request_duration_seconds does not count every answer")
	}
}
