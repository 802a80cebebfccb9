// Package modbus is a Modbus TCP device simulator for tests, the demo and
// `ferry sim modbus`. It is a library first: Start returns a running server
// on a loopback port, and tests program its registers and inject faults
// while a real client talks to it over TCP.
//
//	s, err := modbus.Start(ctx, modbus.Config{})     // 127.0.0.1:<free port>
//	defer s.Close()
//	h := s.Unit(1).HoldingRegisters()
//	h.SetFloat32(100, 21.5, modbus.CDAB)
//	s.AddException(modbus.ExceptionRule{Unit: 1, Area: modbus.Holding,
//		First: 200, Last: 299, Code: modbus.IllegalDataAddress})
//	... point a client at s.Addr() ...
//	n := s.Counters().ByFunction[3]                  // requests served
//
// # Register bank
//
// Each unit ID has its own bank (Unit) with the four areas, each covering
// addresses 0..65535; unset addresses read as zero. Registers has raw
// Set/Get, typed setters and getters for int16 … float64 in any Order
// (ABCD, BADC, CDAB, DCBA, defined on Order), strings two characters per
// register or one per register, and single bits of a register. Client
// writes (FC 5, 6, 15, 16) land in the same bank. A request for a unit ID
// the server does not have gets exception 0x0B.
//
// Config (which a YAML file can fill) lists units and RegisterSpecs; a spec
// holds a fixed value or a Signal (static, counter, sine) that a background
// ticker updates every Config.Tick. DemoConfig is the demo's device.
//
// # Faults
//
// All faults can be switched at run time from any goroutine:
//
//   - AddException: an exception code for an address range (illegal
//     address, device busy, ...), for good or for the next N requests.
//   - SetMaxRegisters (or UnitConfig.MaxRegisters): register reads and
//     writes longer than N get an exception, like devices that reject long
//     reads.
//   - SetDelay / AnswerLate: slow replies for the next N requests or all;
//     one reply after the client's timeout (goburrow/modbus issue #64).
//   - SetSilent: accept and read, but answer nothing, until switched back.
//   - DropAfter / DropConnections / Restart: close a connection at request
//     N, close all connections now, or power-cycle the listener on the same
//     address.
//   - MalformNext: one reply with a short PDU, a truncated frame or a wrong
//     transaction ID.
//
// Quirks describe how a device is rather than what goes wrong once:
// RejectFunction (a device without FC 5 or 6), IgnoreWrites (writes
// confirmed and not kept), SetMaxConnections (a gateway that allows few
// connections). Config.UDP also serves Modbus UDP on the TCP port number
// (UDPAddr). Registers has SetFloat16, SetBCD16 and SetBCD32.
//
// Counters reports requests served per function code and unit, exceptions,
// unanswered requests, connections (accepted, refused, the peak), and the
// shortest pauses a client left after connecting and between requests; ResetCounters zeroes them. Tests use
// them to assert how many requests a poll cycle took.
//
// # Why not simonvetter/modbus's server
//
// The package does its own MBAP framing (server.go) rather than
// github.com/simonvetter/modbus's ModbusServer, which this simulator
// outgrew on several counts: that server binds its listener from a URL and
// keeps it private, so a server on port 0 cannot tell its port; its
// RequestHandler returns values, so it cannot send a short or truncated
// frame, a wrong transaction ID, or close the connection at a chosen
// request; it logs through a *log.Logger (stdout by default) instead of slog;
// and it caps clients at 10 by default, below the 100-device benchmark.
// Framing Modbus TCP is small: a 7-byte header and eight function codes.
//
// The server serves each connection in its own goroutine and answers its
// requests one at a time, in order, as a device does; connections are
// served in parallel.
package modbus
