package main

import (
	"bufio"
	"cmp"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

func startModbusSim(t *testing.T) *simmodbus.Server {
	t.Helper()
	s, err := simmodbus.Start(t.Context(), simmodbus.Config{Tick: time.Hour, Units: []simmodbus.UnitConfig{{ID: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	h := s.Unit(2).HoldingRegisters()
	h.SetFloat32(100, 21.5, simmodbus.CDAB)
	h.SetString(102, "OK", 1, simmodbus.ABCD)
	h.SetInt16(103, -2, simmodbus.ABCD)
	s.Unit(2).Coils().Set(9998, true)
	return s
}

func TestScanModbus(t *testing.T) {
	s := startModbusSim(t)
	url := "tcp://" + s.Addr()
	code, out, errs := run(t, t.Context(), "scan", "modbus", url, "--unit", "2", "--area", "holding", "--range", "100-103")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	// Register 101-102 read as float32 ABCD is 0x41AC4F4B; 100-101 in CDAB
	// is 21.5; the last register has no pair to make a float32 of.
	// The 32-bit integer columns read the pair in the --order (ABCD by
	// default); the 64-bit ones need four registers.
	want := url + ` unit 2, holding 100-103: 4 registers read in 1 request
  address  modicon     hex  uint16  int16  chars  float32 ABCD  float32 CDAB  float32 BADC  float32 DCBA  int32 ABCD  uint32 ABCD      int64 ABCD  float64 ABCD
      100    40101  0x0000       0      0     ..     2.356e-41          21.5     6.179e-41    -2.743e-12       16812        16812  72208320561150    3.568e-310
      101    40102  0x41AC   16812  16812     A.      21.53872      3.41e+09    -2.747e-12  1.361005e+07  1101811531   1101811531
      102    40103  0x4F4B   20299  20299     OK     3.423e+09           NaN  1.363123e+07    -1.697e+38  1330380798   1330380798
      103    40104  0xFFFE   65534     -2     ..
`
	if out = trailing.ReplaceAllString(out, ""); out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}

	// Across the 125-register limit, and a 6-digit Modicon address.
	code, out, _ = run(t, t.Context(), "scan", "--range", "9990-10200", "modbus", url, "--unit=2", "--area=coil")
	if code != 0 || !strings.Contains(out, "coil 9990-10200: 211 read in 1 request") ||
		!regexp.MustCompile(`(?m)^ +9998 +09999 +true$`).MatchString(out) || !regexp.MustCompile(`(?m)^ +9999 +010000 +false$`).MatchString(out) {
		t.Errorf("coil scan:\n%s", out)
	}
	code, out, _ = run(t, t.Context(), "scan", "modbus", url, "--unit", "2", "--range", "0-299")
	if code != 0 || !strings.Contains(out, "300 registers read in 3 requests") {
		t.Errorf("300 registers: exit %d\n%s", code, strings.SplitN(out, "\n", 2)[0])
	}
}

// trailing is the padding tabwriter leaves after the last filled column.
var trailing = regexp.MustCompile(`(?m) +$`)

// TestScanModbusWideTypes: int32, uint32, int64 and float64 columns in the
// chosen word order (issue 15), given in any case.
func TestScanModbusWideTypes(t *testing.T) {
	s := startModbusSim(t)
	h := s.Unit(2).HoldingRegisters()
	h.SetInt32(200, -70000, simmodbus.CDAB)
	h.SetUint32(202, 4000000000, simmodbus.CDAB)
	h.SetInt64(204, -1<<40, simmodbus.CDAB)
	h.SetFloat64(208, math.Pi, simmodbus.CDAB)
	h.SetFloat64(212, 1234.5, simmodbus.ABCD)
	for _, c := range []struct {
		order string
		want  map[int]map[string]string // address → column → value
	}{
		{"cdab", map[int]map[string]string{
			200: {"int32 CDAB": "-70000"},
			202: {"uint32 CDAB": "4000000000"},
			204: {"int64 CDAB": "-1099511627776"},
			208: {"float64 CDAB": "3.14159265359"},
		}},
		{"", map[int]map[string]string{ // ABCD, the Modbus default
			212: {"float64 ABCD": "1234.5"},
			208: {"float64 ABCD": "1.866e-91"}, // pi in CDAB, read the other way
		}},
	} {
		args := []string{"scan", "modbus", "tcp://" + s.Addr(), "--unit", "2", "--range", "200-215"}
		if c.order != "" {
			args = append(args, "--order", c.order)
		}
		code, out, errs := run(t, t.Context(), args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		table := scanTable(t, out)
		for addr, cols := range c.want {
			for col, want := range cols {
				if got := table[addr][col]; got != want {
					t.Errorf("--order %q: %d %s = %q, want %q\n%s", c.order, addr, col, got, want, out)
				}
			}
		}
		// The last three registers have no 64-bit value, the last no pair.
		if got := table[213]["int64 "+strings.ToUpper(cmp.Or(c.order, "ABCD"))]; got != "" {
			t.Errorf("register 213 of 200-215 shows an int64 %q", got)
		}
	}
	if code, _, errs := run(t, t.Context(), "scan", "modbus", "tcp://"+s.Addr(), "--order", "ABDC"); code != 2 || !strings.Contains(errs, `--order "ABDC" is not one of ABCD, BADC, CDAB, DCBA`) {
		t.Errorf("a bad --order: exit %d, %s", code, errs)
	}
}

// scanTable reads a scan's register table: columns are right-aligned and
// their headers hold one space ("float32 ABCD"), so each cell is found
// under the right edge of its header.
func scanTable(t *testing.T, out string) map[int]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("no table:\n%s", out)
	}
	header := lines[1]
	type col struct {
		name       string
		start, end int
	}
	var cols []col
	prev := 0
	for _, m := range regexp.MustCompile(`\S+( \S+)?`).FindAllStringIndex(header, -1) {
		cols = append(cols, col{header[m[0]:m[1]], prev, m[1]})
		prev = m[1]
	}
	table := map[int]map[string]string{}
	for _, l := range lines[2:] {
		row := map[string]string{}
		for _, c := range cols {
			if c.start < len(l) {
				row[c.name] = strings.TrimSpace(l[c.start:min(c.end, len(l))])
			}
		}
		addr, err := strconv.Atoi(row["address"])
		if err != nil {
			t.Fatalf("row %q: %v", l, err)
		}
		table[addr] = row
	}
	return table
}

// TestScanModbusPastTheEnd: a device refuses a whole read that runs past
// its last register; the scan finds where it ends, shows what exists and
// says so (issue 15).
func TestScanModbusPastTheEnd(t *testing.T) {
	s := startModbusSim(t)
	s.AddException(simmodbus.ExceptionRule{Unit: 2, Area: simmodbus.Holding, First: 150, Last: 65535, Code: simmodbus.IllegalDataAddress})
	s.AddException(simmodbus.ExceptionRule{Unit: 2, Area: simmodbus.Coil, First: 10000, Last: 65535, Code: simmodbus.IllegalDataAddress})
	url := "tcp://" + s.Addr()
	for _, c := range []struct {
		args       []string
		read, last string // the summary line; the last address shown
		why        string
	}{
		{[]string{"--range", "100-199"}, "50 registers read in", "149",
			"ferry scan: holding 150-199: past the device's end (or a gap in its map): it answers exception 0x02 (illegal data address) from 150 on; the last address it has is 149"},
		// Past the first request of 125: the second one is the refused one.
		{[]string{"--range", "0-299"}, "150 registers read in", "149", "holding 150-299: past the device's end"},
		{[]string{"--range", "150-160"}, "0 registers read in", "", "holding 150-160: the device answers exception 0x02 (illegal data address) from 150 on: the range starts past the device's end"},
		{[]string{"--area", "coil", "--range", "9990-10100"}, "10 read in", "9999", "coil 10000-10100: past the device's end"},
	} {
		code, out, errs := run(t, t.Context(), append([]string{"scan", "modbus", url, "--unit", "2"}, c.args...)...)
		if code != 1 || !strings.Contains(out, c.read) || !strings.Contains(errs, c.why) {
			t.Errorf("%v: exit %d, want 1\n%s%s\nwant %q and %q", c.args, code, out, errs, c.read, c.why)
		}
		if lines := strings.Split(strings.TrimRight(out, "\n"), "\n"); c.last != "" && strings.Fields(lines[len(lines)-1])[0] != c.last {
			t.Errorf("%v: the last row is %q, want address %s", c.args, lines[len(lines)-1], c.last)
		}
	}
}

func TestScanModbusErrors(t *testing.T) {
	s := startModbusSim(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"scan"}, 2, "usage: ferry scan modbus ENDPOINT"},
		{[]string{"scan", "opcua", "tcp://x"}, 2, "usage"},
		{[]string{"scan", "modbus", "tcp://" + s.Addr(), "--area", "holdings"}, 2, `--area "holdings" is not one of coil, discrete, input, holding`},
		{[]string{"scan", "modbus", "tcp://" + s.Addr(), "--range", "10-2"}, 2, "--range"},
		{[]string{"scan", "modbus", "tpc://" + s.Addr()}, 2, `unknown transport "tpc"`},
		{[]string{"scan", "modbus", "tcp://" + s.Addr(), "--unit", "9", "--range", "0-1"}, 1, "exception 0x0B (gateway target device failed to respond)"},
	} {
		code, _, errs := run(t, t.Context(), tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
}

func TestPlanModbus(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(file, []byte(`data_dir: `+dir+`
connectors:
  plc:
    type: modbus
    max_gap: 4
    devices:
      - name: press
        endpoint: tcp://10.0.0.5
        poll_interval: 250ms
        tags:
          - {name: temperature, address: 40001, type: float32}
          - {name: parts, address: 40003, type: int32}
          - {name: running, address: 40005, type: bit, bit: 0}
          - {name: serial, address: 40011, type: string, length: 16}
          - {name: rpm, address: 30001}
          - {name: pump, address: 00001}
          - {name: door, address: 00003}
      - name: meter
        endpoint: rtu-over-tcp://10.0.0.9:4001
        unit: 7
        tags:
          - {name: energy, area: input, address: 0, type: uint32}
  out: {type: file, path: out.jsonl}
routes:
  - {from: plc, to: out}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, t.Context(), "plan", "-c", file)
	want := `plc/press: tcp://10.0.0.5 unit 1, every 250ms: 7 tags in 4 requests
  fc 1  coil     0-2    (3)  pump door
  fc 4  input    0-0    (1)  rpm
  fc 3  holding  0-4    (5)  temperature parts running
  fc 3  holding  10-17  (8)  serial
plc/meter: rtu-over-tcp://10.0.0.9:4001 unit 7, every 1s: 1 tag in 1 request
  fc 4  input  0-1  (2)  energy
`
	if code != 0 || out != want {
		t.Fatalf("exit %d, stderr %s\n--- got\n%s--- want\n%s", code, errs, out, want)
	}

	// What a running connector learned is shown and applied.
	if err := os.MkdirAll(filepath.Join(dir, "plc"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plc", "learned.json"), []byte(`{"devices": {"press": {"endpoint": "tcp://10.0.0.5", "unit": 1,
		"areas": {"holding": {"max_count": 4}}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, out, _ = run(t, t.Context(), "plan", "-c", file)
	if !strings.Contains(out, "in 5 requests") || !strings.Contains(out, "  learned: holding: at most 4 registers per read") {
		t.Errorf("with learned limits:\n%s", out)
	}

	// A config with errors prints them like validate.
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("connectors:\n  plc:\n    type: modbus\n    devices:\n      - {name: p, endpoint: tcp://x, tags: [{name: t, address: 40001, type: float32, byte_order: ABDC}]}\n"), 0o600)
	code, out, _ = run(t, t.Context(), "plan", "-c", bad)
	if code != 1 || !strings.Contains(out, bad+`:5:98: connectors.plc.devices[p].tags[0].byte_order: "ABDC" is not one of ABCD, BADC, CDAB, DCBA`) {
		t.Errorf("exit %d:\n%s", code, out)
	}
}

// TestValidateModbus: `ferry validate` points at the line of a modbus
// problem, through the whole loader.
func TestValidateModbus(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	_ = os.WriteFile(file, []byte(`connectors:
  plc:
    type: modbus
    devices:
      - name: press
        endpoint: tpc://10.0.0.5
        tags:
          - {name: a, area: holdings, address: 0}
          - {name: b, area: coil, address: 1, type: float32}
          - {name: c, address: 40011, type: string}
          - {name: d, address: 40001, type: float32}
          - {name: e, address: 40002}
          - {name: f, area: input, address: 65536}
`), 0o600)
	code, out, _ := run(t, t.Context(), "validate", "-c", file)
	for _, want := range []string{
		":6:19: connectors.plc.devices[press].endpoint: unknown transport \"tpc\"",
		":8:29: connectors.plc.devices[press].tags[0].area: unknown area \"holdings\"",
		":9:53: connectors.plc.devices[press].tags[1].type: float32 does not fit a coil",
		":10:13: connectors.plc.devices[press].tags[2].length: a string needs length",
		":12:32: connectors.plc.devices[press].tags[4].address: uint16 at holding 1 overlaps tags[3]",
		":13:45: connectors.plc.devices[press].tags[5].address: address 65536 is out of range 0..65535",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d", code)
	}
}

func TestSimModbus(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var stderr strings.Builder
	go func() {
		done <- dispatch(ctx, []string{"sim", "modbus", "--addr", "127.0.0.1:0", "--log-level", "warn"}, pw, &stderr)
		_ = pw.Close()
	}()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var first string
	select {
	case first = <-lines:
	case <-time.After(10 * time.Second):
		t.Fatal("no listening line")
	}
	m := regexp.MustCompile(`^modbus sim listening on (127\.0\.0\.1:\d+)`).FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first line %q", first)
	}
	// The demo device answers: temperature (float32 ABCD around 21.5),
	// status 5, setpoint 225.
	code, out, errs := run(t, t.Context(), "scan", "modbus", "tcp://"+m[1], "--range", "4-5")
	if code != 0 || !regexp.MustCompile(`(?m)^ +4 +40005 +0x0005 +5 +5 `).MatchString(out) || !strings.Contains(out, "0x00E1") {
		t.Errorf("scan of the sim: exit %d %s\n%s", code, errs, out)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("sim exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sim did not stop after cancel")
	}
	for range lines {
	}
	if code, _, _ := run(t, t.Context(), "sim", "frobnicator"); code != 2 {
		t.Errorf("sim frobnicator: exit %d, want 2", code)
	}
}
