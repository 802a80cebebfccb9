// Package discover is what `ferry scan`, `ferry browse` and the status
// page's discovery share: a Modbus range read and decoded every way an
// integrator may need to recognise a value, an OPC UA address space read
// one level at a time, and the connector section (YAML) for what was
// picked, checked by the config loader before anyone pastes it.
package discover

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-gateway/ferry/connectors/modbus"
)

// Scan is a Modbus range to read.
type Scan struct {
	Endpoint string        `json:"endpoint"` // tcp://HOST[:PORT], rtu-over-tcp://…, rtu:///dev/…
	Unit     int           `json:"unit"`
	Area     string        `json:"area"`  // coil, discrete, input, holding
	First    int           `json:"first"` // 0-based
	Count    int           `json:"count"`
	Timeout  time.Duration `json:"-"`
}

// MaxScan bounds one scan: a few hundred registers are a screenful, and a
// scan holds a connection the device may have few of.
const MaxScan = 2000

// Orders are the word and byte orders a pair of registers is shown in.
var Orders = []modbus.Order{modbus.ABCD, modbus.CDAB, modbus.BADC, modbus.DCBA}

// Register is one address of a scan, decoded.
type Register struct {
	Address int    `json:"address"` // 0-based
	Modicon string `json:"modicon"` // 1-based, with the area's digit: 40001
	// Bit is the value of a coil or discrete input.
	Bit *bool `json:"bit,omitempty"`
	// A register alone.
	Hex    string `json:"hex,omitempty"`
	Uint16 uint16 `json:"uint16"`
	Int16  int16  `json:"int16"`
	Chars  string `json:"chars,omitempty"`
	// This register and the next, in every order: "float32 CDAB" and so on.
	// Absent for the last register of the range.
	Pairs map[string]string `json:"pairs,omitempty"`
}

// ScanResult is what a scan read.
type ScanResult struct {
	Scan
	Requests  int        `json:"requests"`
	Registers []Register `json:"registers"`
	// Error is why the scan stopped early; the registers read before it
	// are kept.
	Error string `json:"error,omitempty"`
}

// Check validates a scan request, saying what is wrong in the words of
// the form that sent it.
func (s *Scan) Check() (modbus.Area, error) {
	a, ok := modbus.ParseArea(s.Area)
	switch {
	case !ok:
		return 0, fmt.Errorf("area %q is not one of %s", s.Area, strings.Join(modbus.AreaNames, ", "))
	case s.Unit < 0 || s.Unit > 255:
		return 0, fmt.Errorf("unit %d is not in 0..255", s.Unit)
	case s.First < 0 || s.Count < 1 || s.First+s.Count > 65536:
		return 0, fmt.Errorf("range %d+%d is not within 0..65535", s.First, s.Count)
	case s.Count > MaxScan:
		return 0, fmt.Errorf("count %d is more than %d a scan", s.Count, MaxScan)
	}
	if _, err := modbus.ParseEndpoint(s.Endpoint); err != nil {
		return 0, err
	}
	return a, nil
}

// ScanModbus reads the range once, with the connector's transports.
func ScanModbus(ctx context.Context, s Scan) (ScanResult, error) {
	a, err := s.Check()
	if err != nil {
		return ScanResult{}, err
	}
	c, err := modbus.Open(s.Endpoint, s.Timeout)
	if err != nil {
		return ScanResult{}, err
	}
	defer c.Close()
	res := ScanResult{Scan: s, Registers: []Register{}}
	if a.Bits() {
		bits, reqs, err := c.Bits(ctx, uint8(s.Unit), a, s.First, s.Count)
		res.Requests = reqs
		for i, b := range bits {
			res.Registers = append(res.Registers, Register{Address: s.First + i, Modicon: Modicon(a, s.First+i), Bit: &b})
		}
		if err != nil {
			res.Error = err.Error()
		}
		return res, nil
	}
	regs, reqs, err := c.Registers(ctx, uint8(s.Unit), a, s.First, s.Count)
	res.Requests = reqs
	res.Registers = Decode(a, s.First, regs)
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}

// Decode shows each register alone and with the next one as 32-bit
// integers and floats in every order.
func Decode(a modbus.Area, first int, regs []uint16) []Register {
	out := make([]Register, 0, len(regs))
	var pair [4]byte
	for i, r := range regs {
		reg := Register{Address: first + i, Modicon: Modicon(a, first+i), Hex: fmt.Sprintf("0x%04X", r), Uint16: r, Int16: int16(r), Chars: Chars(r)}
		if i+1 < len(regs) {
			binary.BigEndian.PutUint16(pair[:], r)
			binary.BigEndian.PutUint16(pair[2:], regs[i+1])
			reg.Pairs = map[string]string{}
			for _, o := range Orders {
				u := uint32(o.Uint(pair[:], 2))
				reg.Pairs["float32 "+o.String()] = Float(o.Float32(pair[:]))
				reg.Pairs["int32 "+o.String()] = strconv.FormatInt(int64(int32(u)), 10)
				reg.Pairs["uint32 "+o.String()] = strconv.FormatUint(uint64(u), 10)
			}
		}
		out = append(out, reg)
	}
	return out
}

// Modicon is the 1-based Modicon notation of a 0-based address.
func Modicon(a modbus.Area, addr int) string {
	digit := [...]byte{'0', '1', '3', '4'}[a]
	if addr < 9999 {
		return fmt.Sprintf("%c%04d", digit, addr+1)
	}
	return fmt.Sprintf("%c%05d", digit, addr+1)
}

// Chars shows a register's two bytes as text where they are printable.
func Chars(r uint16) string {
	c := func(b byte) byte {
		if b >= 0x20 && b < 0x7F {
			return b
		}
		return '.'
	}
	return string([]byte{c(byte(r >> 8)), c(byte(r))})
}

// Float prints a float32 the way a reading looks; tiny and huge ones, which
// are seldom readings, in short exponent form.
func Float(f float32) string {
	switch {
	case math.IsNaN(float64(f)):
		return "NaN"
	case f != 0 && (math.Abs(float64(f)) < 1e-6 || math.Abs(float64(f)) > 1e9):
		return strconv.FormatFloat(float64(f), 'g', 4, 32)
	}
	return strconv.FormatFloat(float64(f), 'g', 7, 32)
}
