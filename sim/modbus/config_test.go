package modbus

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// TestConfigFromYAML decodes the example in Config's doc comment strictly
// and serves it.
func TestConfigFromYAML(t *testing.T) {
	const doc = `
addr: 127.0.0.1:0
tick: 1h
units:
  - id: 1
    max_registers: 64
    registers:
      - {name: temperature, area: holding, address: 0, type: float32, order: ABCD,
         signal: {kind: sine, offset: 21.5, amplitude: 3.5, period: 60s}}
      - {name: status, area: holding, address: 4, type: uint16, value: 1}
      - {name: serial, area: holding, address: 10, type: string, length: 8, value: FRY-0001}
      - {name: count, area: input, address: 0, type: uint32, order: CDAB, value: 70000}
      - {name: pump_run, area: coil, address: 0, value: true}
  - id: 2
    max_registers_code: 3
`
	var cfg Config
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Tick != time.Hour || cfg.Units[0].Registers[0].Signal.Period != time.Minute ||
		cfg.Units[1].MaxRegistersCode != IllegalDataValue {
		t.Errorf("decoded %+v", cfg)
	}
	s := start(t, cfg)
	u := s.Unit(1)
	h := u.HoldingRegisters()
	if h.Float32(0, ABCD) != 21.5 || h.Uint16(4, ABCD) != 1 || h.String(10, 8, ABCD) != "FRY-0001" ||
		u.InputRegisters().Uint32(0, CDAB) != 70000 || !u.Coils().Bool(0) {
		t.Errorf("bank: %v %d %q %d %v", h.Float32(0, ABCD), h.Uint16(4, ABCD), h.String(10, 8, ABCD),
			u.InputRegisters().Uint32(0, CDAB), u.Coils().Bool(0))
	}
}

func TestValidate(t *testing.T) {
	cfg := Config{Tick: -1, Units: []UnitConfig{
		{ID: 1, MaxRegisters: -1, Registers: []RegisterSpec{
			{Area: "holdings"},
			{Area: Coil, Type: Float32},
			{Area: Holding, Type: "float16"},
			{Area: Holding, Order: "ABDC"},
			{Area: Holding, Address: 65533, Type: Float64},
			{Area: Holding, Type: Uint16, Value: 70000},
			{Area: Holding, Type: String, Length: 2, Value: "too long"},
			{Area: Holding, Type: String, Value: 5},
			{Area: Holding, Type: Bit, Bit: 16, Value: true},
			{Area: Input, Signal: &Signal{Kind: "square"}},
			{Area: Input, Type: String, Signal: &Signal{Kind: Counter}},
			{Area: Coil, Value: 1},
		}},
		{ID: 1},
	}}
	err := cfg.Validate()
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"tick: ",
		"units[0].max_registers: ",
		`units[0].registers[0].area: invalid modbus sim config: "holdings" is not one of coil, discrete, input, holding`,
		"units[0].registers[1].type: invalid modbus sim config: float32 does not fit area coil",
		`units[0].registers[2].type: invalid modbus sim config: "float16" is not one of bool, bit, int16`,
		`units[0].registers[3].order: invalid modbus sim config: "ABDC" is not one of ABCD, BADC, CDAB, DCBA`,
		"units[0].registers[4].address: invalid modbus sim config: 4 registers from 65533 run past address 65535",
		"units[0].registers[5].value: invalid modbus sim config: 70000 is out of range for uint16",
		"units[0].registers[6].value: ",
		"units[0].registers[7].value: ",
		"units[0].registers[8].bit: ",
		`units[0].registers[9].signal.kind: invalid modbus sim config: "square" is not one of static, counter, sine`,
		"units[0].registers[10].signal: ",
		"units[0].registers[11].value: ",
		"units[1].id: invalid modbus sim config: unit 1 appears twice",
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(lines), len(want), err)
	}
	for i, w := range want {
		if i < len(lines) && !strings.HasPrefix(lines[i], w) {
			t.Errorf("problem %d = %q, want prefix %q", i, lines[i], w)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("empty config: %v", err)
	}
}

// TestStartLogsAddress checks that the listening address is logged.
func TestStartLogsAddress(t *testing.T) {
	var buf bytes.Buffer
	var mu lockedWriter
	mu.w = &buf
	s := start(t, Config{Logger: newTextLogger(&mu)})
	if got := mu.String(); !strings.Contains(got, "addr="+s.Addr()) {
		t.Errorf("log = %q, want the address %s", got, s.Addr())
	}
}
