package modbus

import (
	"testing"
	"time"

	mb "github.com/goburrow/modbus"
)

// BenchmarkReadHolding125 is one client reading 125 holding registers per
// request over loopback: the simulator's cost per request plus the
// client's. Compare with the ~40,000 requests/s floor in LIBRARY-NOTES.md.
func BenchmarkReadHolding125(b *testing.B) {
	s, err := Start(b.Context(), Config{Units: []UnitConfig{{ID: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.Unit(1).HoldingRegisters().Set(0, make([]uint16, 125)...)
	h := mb.NewTCPClientHandler(s.Addr())
	h.SlaveId, h.Timeout, h.IdleTimeout = 1, 2*time.Second, 0
	defer h.Close()
	cl := mb.NewClient(h)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cl.ReadHoldingRegisters(0, 125); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
