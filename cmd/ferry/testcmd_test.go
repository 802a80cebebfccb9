package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	simmodbus "github.com/ferry-gateway/ferry/sim/modbus"
)

func testConfigFile(t *testing.T, endpoint string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ferry.yaml")
	err := os.WriteFile(file, []byte(fmt.Sprintf(`
connectors:
  press7:
    type: modbus
    devices:
      - name: press-7
        endpoint: %s
        poll_interval: 200ms
        timeout: 300ms
        tags:
          - {name: oven/temperature, address: 40001, type: float32, unit: "°C"}
          - {name: line/serial, address: 40011, type: string, length: 8}
  out: {type: file, path: out.jsonl}
routes:
  - {from: press7, to: out}
`, endpoint)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// TestFerryTestPrintsDecodedValues: against sim/modbus, the demo's values
// decoded, a summary, exit 0; nothing is written where the config says.
func TestFerryTestPrintsDecodedValues(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := simmodbus.DemoConfig()
	cfg.Addr = "127.0.0.1:0"
	s, err := simmodbus.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	file := testConfigFile(t, "tcp://"+s.Addr())
	code, out, errOut := run(t, ctx, "test", "-c", file, "--for", "1s")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"press-7", "oven/temperature", "°C", "FRY-0001", "GOOD", "SOURCE  DEVICE   RECORDS  BAD"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(file), "out.jsonl")); err == nil {
		t.Error("ferry test started the sink")
	}
	code, out, _ = run(t, ctx, "test", file, "--json", "--for", "500ms", "--module", "press7")
	if code != 0 {
		t.Fatalf("--json: exit %d", code)
	}
	line, _, _ := strings.Cut(out, "\n")
	var rec testLine
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Device != "press-7" || rec.Quality != "GOOD" {
		t.Errorf("first JSON line %q: %v", line, err)
	}
}

// TestFerryTestNamesTheSilentDevice: no listener at the endpoint is exit 1
// naming the device.
func TestFerryTestNamesTheSilentDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now
	code, out, errOut := run(t, ctx, "test", testConfigFile(t, "tcp://"+addr), "--for", "1s")
	if code != 1 || !strings.Contains(errOut, "never answered: press7/press-7") {
		t.Fatalf("exit %d, want 1 naming press7/press-7\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "connection refused") {
		t.Errorf("the summary does not say why:\n%s", out)
	}
	if code, _, errOut := run(t, ctx, "test", testConfigFile(t, "tcp://"+addr), "--module", "nope"); code != 2 || !strings.Contains(errOut, "no source named nope") {
		t.Errorf("--module nope: %d %s", code, errOut)
	}
}
