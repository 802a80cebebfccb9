package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportModbusCSV: a CSV tag list becomes a connector section that a
// config can hold as it is; a bad row is reported at its line.
func TestImportModbusCSV(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "press.csv")
	if err := os.WriteFile(csv, []byte("name,address,type,order,scale,unit,writable\n"+
		"temperature,40001,REAL,CDAB,,°C,R\n"+
		"setpoint,holding:5,INT,,0.1,°C,RW\n"+
		"slow,40010,uint16,,,,\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "press.yaml")
	code, stdout, stderr := run(t, t.Context(), "import", "modbus-csv", csv, "--endpoint", "tcp://10.0.0.5", "--unit", "3", "-o", out)
	if code != 0 || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	section, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The section, indented under connectors.plc, makes a config that
	// validates and plans.
	var cfg strings.Builder
	cfg.WriteString("data_dir: " + dir + "\nconnectors:\n  plc:\n")
	for _, l := range strings.SplitAfter(string(section), "\n") {
		if l != "" {
			cfg.WriteString("    " + l)
		}
	}
	cfg.WriteString("  out: {type: file, path: out.jsonl}\nroutes:\n  - {from: plc, to: out}\n")
	file := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(file, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := run(t, t.Context(), "validate", file); code != 0 {
		t.Fatalf("imported config does not validate (exit %d):\n%s%s\n%s", code, stdout, stderr, cfg.String())
	}
	code, stdout, _ = run(t, t.Context(), "plan", file)
	if code != 0 || !strings.HasPrefix(stdout, "plc/press: tcp://10.0.0.5 unit 3, every 1s: 3 tags in 1 request\n") {
		t.Errorf("plan of the imported device (exit %d):\n%s", code, stdout)
	}

	if err := os.WriteFile(csv, []byte("name,address,type\nok,40001,uint16\nbad,40002,floot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = run(t, t.Context(), "import", "modbus-csv", csv)
	if code != 1 || stdout != "" || !strings.Contains(stderr, csv+`:3: type: unknown type "floot"`) {
		t.Errorf("bad row: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := run(t, t.Context(), "import", "opcua-csv", csv); code != 2 {
		t.Errorf("unknown import kind: exit %d, want 2", code)
	}
}

// TestPlanPollGroups: `ferry plan` prints one plan per poll interval.
func TestPlanPollGroups(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ferry.yaml")
	if err := os.WriteFile(file, []byte(`connectors:
  plc:
    type: modbus
    devices:
      - name: press
        endpoint: tcp://10.0.0.5
        poll_interval: 250ms
        tags:
          - {name: temperature, address: 40001, type: float32}
          - {name: parts, address: 40003, type: int32}
          - {name: serial, address: 40011, type: string, length: 16, poll_interval: 1m}
          - {name: recipe, address: 40021, type: bcd16, poll_interval: 1m}
  out: {type: file, path: out.jsonl}
routes:
  - {from: plc, to: out}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run(t, t.Context(), "plan", file)
	want := `plc/press: tcp://10.0.0.5 unit 1, every 250ms: 2 tags in 1 request
  fc 3  holding  0-3  (4)  temperature parts
plc/press: tcp://10.0.0.5 unit 1, every 1m0s: 2 tags in 1 request
  fc 3  holding  10-20  (11)  serial recipe
`
	if code != 0 || out != want {
		t.Fatalf("exit %d, stderr %s\n--- got\n%s--- want\n%s", code, errs, out, want)
	}
}
