package modbus

import (
	"errors"
	"math"
	"net"
	"testing"
	"time"

	mb "github.com/goburrow/modbus"
)

func TestHalf(t *testing.T) {
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{1, 0x3C00}, {-2.5, 0xC100}, {21.5, 0x4D60}, {65504, 0x7BFF}, {65520, 0x7C00},
		{float32(math.Ldexp(1, -14)), 0x0400}, {float32(math.Ldexp(1, -24)), 0x0001},
		{float32(math.Ldexp(1, -26)), 0}, {1 + 1.0/2048, 0x3C00}, {1 + 3.0/2048, 0x3C02},
		{float32(math.Inf(-1)), 0xFC00}, {float32(math.NaN()), 0x7E00}, {float32(math.Copysign(0, -1)), 0x8000},
	} {
		if got := half(c.f); got != c.want {
			t.Errorf("half(%v) = 0x%04X, want 0x%04X", c.f, got, c.want)
		}
	}
	if bcd(12345678) != 0x12345678 || bcd(0) != 0 {
		t.Errorf("bcd: 0x%X", bcd(12345678))
	}
}

// TestQuirks: a rejected function code, writes the device does not keep,
// a connection limit, and Modbus UDP, through a real client.
func TestQuirks(t *testing.T) {
	s := start(t, Config{UDP: true, Units: []UnitConfig{{ID: 1}}})
	h := mb.NewTCPClientHandler(s.Addr())
	h.SlaveId, h.Timeout = 1, 2*time.Second
	defer h.Close()
	c := mb.NewClient(h)

	s.RejectFunction(6, 0)
	var me *mb.ModbusError
	if _, err := c.WriteSingleRegister(0, 1); !errors.As(err, &me) || me.ExceptionCode != byte(IllegalFunction) {
		t.Errorf("FC 6 rejected: %v", err)
	}
	s.RejectFunction(6, 0xFF)
	if _, err := c.WriteSingleRegister(0, 1); err != nil {
		t.Errorf("FC 6 accepted again: %v", err)
	}

	s.IgnoreWrites(1, Holding, 10, 11)
	if _, err := c.WriteMultipleRegisters(9, 2, []byte{0, 5, 0, 6}); err != nil {
		t.Fatal(err)
	}
	if got := s.Unit(1).HoldingRegisters().Get(9, 2); got[0] != 0 || got[1] != 0 {
		t.Errorf("a write touching ignored registers was kept: %v", got)
	}

	s.SetMaxConnections(1)
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("a connection over the limit was kept open")
	}
	if c := s.Counters(); c.Refused != 1 || c.PeakConnections != 1 || c.FirstRequestAfter <= 0 || c.RequestGap <= 0 {
		t.Errorf("counters %+v", c)
	}

	if s.UDPAddr() == "" {
		t.Fatal("no UDP address")
	}
	u, err := net.Dial("udp", s.UDPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(5 * time.Second))
	s.Unit(1).HoldingRegisters().Set(3, 0xBEEF)
	if _, err := u.Write([]byte{0, 7, 0, 0, 0, 6, 1, 3, 0, 3, 0, 1}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := u.Read(buf)
	if err != nil || string(buf[:n]) != string([]byte{0, 7, 0, 0, 0, 5, 1, 3, 2, 0xBE, 0xEF}) {
		t.Errorf("UDP answer % x, %v", buf[:n], err)
	}
}
