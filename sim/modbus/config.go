package modbus

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
var ErrInvalidConfig = errors.New("invalid modbus sim config")

// ErrClosed is returned by Restart after Close.
var ErrClosed = errors.New("modbus sim closed")

// Config describes a simulated device (or a gateway with several unit IDs
// behind one TCP port). The yaml tags are the names a ferry.yaml section
// would use; Logger is set in code.
//
//	addr: 127.0.0.1:5020
//	tick: 1s
//	units:
//	  - id: 1
//	    max_registers: 64          # reject longer reads with exception 2
//	    registers:
//	      - {name: temperature, area: holding, address: 0, type: float32, order: ABCD,
//	         signal: {kind: sine, offset: 21.5, amplitude: 3.5, period: 60s}}
//	      - {name: status, area: holding, address: 4, type: uint16, value: 1}
//	      - {name: serial, area: holding, address: 10, type: string, length: 8, value: FRY-0001}
//	      - {name: pump_run, area: coil, address: 0, value: true}
type Config struct {
	// Addr is the TCP address to listen on; default "127.0.0.1:0" (a free
	// port, read it back with Server.Addr).
	Addr string `yaml:"addr"`
	// Tick is how often signals are updated; default 1s. Sine signals
	// advance by Tick per update, so their shape does not depend on timing.
	// Tests that drive signals by hand with Server.UpdateSignals set a long
	// Tick (say an hour) so the background updates never interfere.
	Tick time.Duration `yaml:"tick"`
	// Units are the unit IDs the server answers for; a request to any other
	// unit ID gets exception 0x0B (gateway target device failed to
	// respond). More can be added at run time with Server.Unit.
	Units []UnitConfig `yaml:"units"`
	// UDP also serves Modbus TCP frames over UDP (one request and one
	// answer per datagram), on the same port number as TCP; see UDPAddr.
	UDP bool `yaml:"udp"`
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// UnitConfig is one unit ID and its initial registers.
type UnitConfig struct {
	ID uint8 `yaml:"id"`
	// MaxRegisters, when non-zero, is the most registers this unit accepts
	// in one read or write (FC 3, 4, 16), to emulate devices that reject
	// long reads. Longer requests get MaxRegistersCode.
	MaxRegisters int `yaml:"max_registers"`
	// MaxRegistersCode is the exception for requests above MaxRegisters;
	// default 0x02 (illegal data address). 0x03 (illegal data value) is the
	// other common choice.
	MaxRegistersCode ExceptionCode  `yaml:"max_registers_code"`
	Registers        []RegisterSpec `yaml:"registers"`
}

// RegisterSpec puts one value, fixed or changing, at an address.
type RegisterSpec struct {
	// Name is for people and logs only.
	Name string `yaml:"name"`
	// Area is coil, discrete, input or holding.
	Area Area `yaml:"area"`
	// Address is the 0-based address of the first register or bit.
	Address uint16 `yaml:"address"`
	// Type defaults to uint16 in register areas and bool in bit areas, the
	// only type a bit area takes.
	Type Type `yaml:"type"`
	// Order is the byte and word order (see Order); default ABCD.
	Order Order `yaml:"order"`
	// Bit is the bit number (0 = least significant … 15) for type bit.
	Bit uint8 `yaml:"bit"`
	// Length is the size of a string field in registers; 0 = as many as
	// the value needs.
	Length int `yaml:"length"`
	// Value is the fixed value: a number for numeric types, a bool for bool
	// and bit, a string for the string types. Ignored when Signal is set.
	Value any `yaml:"value"`
	// Signal, if set, makes the value change on every tick.
	Signal *Signal `yaml:"signal"`
}

// SignalKind selects how a Signal's value evolves.
type SignalKind string

// The signal kinds.
const (
	// Static holds Value; it is written once, so client writes stick.
	Static SignalKind = "static"
	// Counter starts at Value and adds Step (default 1) every tick;
	// integer types wrap around like a device counter.
	Counter SignalKind = "counter"
	// Sine is Offset + Amplitude·sin(2π·n·Tick/Period) after n ticks.
	Sine SignalKind = "sine"
)

// SignalKinds lists the valid kinds.
var SignalKinds = []SignalKind{Static, Counter, Sine}

// Signal is a dynamic value. On a bool (coil, discrete) or bit target, a
// counter toggles every tick (true on odd counts when Step is 1), a sine is
// true while above its offset, and a static is Value != 0.
type Signal struct {
	Kind      SignalKind    `yaml:"kind"`
	Value     float64       `yaml:"value"`     // static value; counter start
	Step      float64       `yaml:"step"`      // counter increment; default 1
	Offset    float64       `yaml:"offset"`    // sine centre
	Amplitude float64       `yaml:"amplitude"` // sine amplitude
	Period    time.Duration `yaml:"period"`    // sine period; default 60s
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Tick == 0 {
		c.Tick = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (u *UnitConfig) setDefaults() {
	if u.MaxRegistersCode == 0 {
		u.MaxRegistersCode = IllegalDataAddress
	}
}

func (s *RegisterSpec) setDefaults() {
	if s.Type == "" {
		if s.Area.bits() {
			s.Type = Bool
		} else {
			s.Type = Uint16
		}
	}
	if s.Order == "" {
		s.Order = ABCD
	}
	if s.Signal != nil {
		if s.Signal.Step == 0 {
			s.Signal.Step = 1
		}
		if s.Signal.Period == 0 {
			s.Signal.Period = time.Minute
		}
	}
}

// Validate reports every problem in c, each wrapping ErrInvalidConfig and
// naming its field, as in "units[0].registers[2].order: ...". It does no I/O.
func (c Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w: %s", path, ErrInvalidConfig, fmt.Sprintf(format, args...)))
	}
	if c.Tick < 0 {
		add("tick", "%s is negative", c.Tick)
	}
	seen := map[uint8]bool{}
	for i, u := range c.Units {
		up := fmt.Sprintf("units[%d]", i)
		if seen[u.ID] {
			add(up+".id", "unit %d appears twice", u.ID)
		}
		seen[u.ID] = true
		if u.MaxRegisters < 0 {
			add(up+".max_registers", "%d is negative", u.MaxRegisters)
		}
		for j, r := range u.Registers {
			r.setDefaults()
			validateSpec(fmt.Sprintf("%s.registers[%d]", up, j), r, add)
		}
	}
	return errors.Join(errs...)
}

func validateSpec(p string, r RegisterSpec, add func(path, format string, args ...any)) {
	if !r.Area.valid() {
		add(p+".area", "%q is not one of %s", r.Area, join(Areas))
		return
	}
	if !r.Type.valid() {
		add(p+".type", "%q is not one of %s", r.Type, join(Types))
		return
	}
	if r.Area.bits() != (r.Type == Bool) {
		add(p+".type", "%s does not fit area %s", r.Type, r.Area)
		return
	}
	if !r.Order.valid() {
		add(p+".order", "%q is not one of %s", r.Order, join(Orders))
	}
	if r.Type == Bit && r.Bit > 15 {
		add(p+".bit", "%d is not one of 0..15", r.Bit)
	}
	if r.Length < 0 {
		add(p+".length", "%d is negative", r.Length)
	}
	if n := specRegisters(r); int(r.Address)+n > 1<<16 {
		add(p+".address", "%d registers from %d run past address 65535", n, r.Address)
	}
	if r.Signal != nil {
		switch r.Signal.Kind {
		case Static, Counter, Sine:
		default:
			add(p+".signal.kind", "%q is not one of %s", r.Signal.Kind, join(SignalKinds))
		}
		if r.Type == String || r.Type == StringByte {
			add(p+".signal", "a %s cannot follow a signal", r.Type)
		}
		if r.Signal.Period < 0 {
			add(p+".signal.period", "%s is negative", r.Signal.Period)
		}
		return
	}
	if r.Value == nil {
		return // zero
	}
	if err := checkValue(r); err != nil {
		add(p+".value", "%v", err)
	}
}

// specRegisters is how many addresses r occupies.
func specRegisters(r RegisterSpec) int {
	switch r.Type {
	case Bool:
		return 1
	case String:
		if r.Length > 0 {
			return r.Length
		}
		if s, ok := r.Value.(string); ok {
			return (len(s) + 1) / 2
		}
		return 1
	case StringByte:
		if r.Length > 0 {
			return r.Length
		}
		if s, ok := r.Value.(string); ok {
			return len(s)
		}
		return 1
	}
	return r.Type.Registers()
}

func checkValue(r RegisterSpec) error {
	switch r.Type {
	case Bool, Bit:
		if _, ok := r.Value.(bool); !ok {
			return fmt.Errorf("%v (%T) is not a bool", r.Value, r.Value)
		}
	case String:
		s, ok := r.Value.(string)
		if !ok {
			return fmt.Errorf("%v (%T) is not a string", r.Value, r.Value)
		}
		_, err := encodeString(s, r.Length, r.Order)
		return err
	case StringByte:
		s, ok := r.Value.(string)
		if !ok {
			return fmt.Errorf("%v (%T) is not a string", r.Value, r.Value)
		}
		_, err := encodeStringByte(s, r.Length)
		return err
	default:
		_, err := rawOf(r.Type, r.Value)
		return err
	}
	return nil
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// DemoConfig returns a plausible single device on unit 1 for the demo and
// for tests that want "some device": a temperature that follows a sine, a
// part counter, a status word with bit flags, a setpoint, a serial number,
// a motor speed and a few coils and inputs.
//
//	holding 0-1   temperature  float32 ABCD  sine 21.5 ± 3.5 °C, 60 s period
//	holding 2-3   parts_count  int32   CDAB  counter from 1000, +1 a tick
//	holding 4     status       uint16        0x0005 (bit 0 running, bit 2 auto)
//	holding 5     setpoint     uint16        225 (22.5 °C ×10), writable
//	holding 10-17 serial       string        "FRY-0001-A7" in 8 registers
//	input 0       motor_rpm    uint16        sine 1450 ± 50 rpm, 20 s period
//	input 1-2     pressure     float32 DCBA  4.2 bar
//	coil 0        pump_run     true
//	coil 1        alarm_ack    false, writable
//	discrete 0    door_closed  true
//	discrete 1    heartbeat    counter: toggles every tick
func DemoConfig() Config {
	return Config{
		Tick: time.Second,
		Units: []UnitConfig{{
			ID: 1,
			Registers: []RegisterSpec{
				{Name: "temperature", Area: Holding, Address: 0, Type: Float32, Order: ABCD,
					Signal: &Signal{Kind: Sine, Offset: 21.5, Amplitude: 3.5, Period: time.Minute}},
				{Name: "parts_count", Area: Holding, Address: 2, Type: Int32, Order: CDAB,
					Signal: &Signal{Kind: Counter, Value: 1000, Step: 1}},
				{Name: "status", Area: Holding, Address: 4, Type: Uint16, Value: 0x0005},
				{Name: "setpoint", Area: Holding, Address: 5, Type: Uint16, Value: 225},
				{Name: "serial", Area: Holding, Address: 10, Type: String, Length: 8, Value: "FRY-0001-A7"},
				{Name: "motor_rpm", Area: Input, Address: 0, Type: Uint16,
					Signal: &Signal{Kind: Sine, Offset: 1450, Amplitude: 50, Period: 20 * time.Second}},
				{Name: "pressure", Area: Input, Address: 1, Type: Float32, Order: DCBA, Value: 4.2},
				{Name: "pump_run", Area: Coil, Address: 0, Value: true},
				{Name: "alarm_ack", Area: Coil, Address: 1, Value: false},
				{Name: "door_closed", Area: Discrete, Address: 0, Value: true},
				{Name: "heartbeat", Area: Discrete, Address: 1,
					Signal: &Signal{Kind: Counter}},
			},
		}},
	}
}
