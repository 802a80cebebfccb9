package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
	want := url + ` unit 2, holding 100-103: 4 registers read in 1 request
  address  modicon     hex  uint16  int16  chars  float32 ABCD  float32 CDAB  float32 BADC  float32 DCBA
      100    40101  0x0000       0      0     ..     2.356e-41          21.5     6.179e-41    -2.743e-12
      101    40102  0x41AC   16812  16812     A.      21.53872      3.41e+09    -2.747e-12  1.361005e+07
      102    40103  0x4F4B   20299  20299     OK     3.423e+09           NaN  1.363123e+07    -1.697e+38
      103    40104  0xFFFE   65534     -2     ..` + strings.Repeat(" ", 56) + `
`
	if out != want {
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
