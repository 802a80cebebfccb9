package modbus

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	mb "github.com/goburrow/modbus"
	"github.com/goburrow/serial"

	"github.com/ferry-gateway/ferry/bus"
)

// link is one connection to one endpoint, shared by the devices (unit IDs)
// behind it. Requests on it are serialised: one in flight at a time, as
// the protocol requires on serial lines and as most TCP devices expect.
//
// The defence against goburrow/modbus issue #64 lives here: after any
// failure that is not an exception reply (a timeout, a transaction-ID
// mismatch, a short frame), the connection is closed, so that a late reply
// can never be read as the answer to a later request. The next request
// opens a fresh connection.
type link struct {
	ep     Endpoint
	sem    chan struct{} // holds one token while a request is in flight
	closed bool          // guarded by sem

	client  mb.Client
	closer  interface{ Close() error }
	connect func() error // opens the connection now (pause_after_connect)
	setUnit func(byte)
	setTime func(time.Duration)

	// Pacing, guarded by sem. open is whether a connection is known to be
	// open; it is tracked only when pauseConnect is set (which also turns
	// off goburrow's idle close, a reconnect ferry would not see).
	pauseConnect time.Duration
	paced        bool      // some device has pause_between_requests
	open         bool      // guarded by sem
	lastIO       time.Time // end of the last exchange, when paced

	onReset     func() // counts reconnects
	noIdleClose func() // turns off the client's own idle close

	devices []*device     // polled in turn by run
	wake    chan struct{} // a device asks for an early poll
	emitq   chan *device  // batches for emit, on links with several devices
}

// emit publishes the batches of the link's devices, so that reading the
// next device overlaps with encoding and publishing the last one.
func (l *link) emit(ctx context.Context, env interface {
	Emit(context.Context, *bus.Batch) error
}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-l.emitq:
			emitOne(ctx, env, d)
		}
	}
}

// emitOne publishes d's batch and gives d its batch back, even when Emit
// panics: the Env restarts emit, and d's next cycle must not wait forever
// for a batch nobody returns.
func emitOne(ctx context.Context, env interface {
	Emit(context.Context, *bus.Batch) error
}, d *device) {
	defer func() { d.free <- struct{}{} }()
	_ = env.Emit(ctx, &d.batch) // Emit counts and logs its own failures
}

// run polls the link's devices, each when it is due, one after the other:
// the way a bus master serves its slaves, and without handing the
// connection between goroutines, which costs more than a request on
// loopback.
func (l *link) run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		var next time.Time
		for _, d := range l.devices {
			if poked := d.poked.Swap(false); poked || !now.Before(d.due) {
				start := time.Now()
				ok := d.cycle(ctx, start, poked)
				if ctx.Err() != nil {
					return nil
				}
				d.schedule(ok, start)
			}
			if next.IsZero() || d.due.Before(next) {
				next = d.due
			}
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-l.wake:
		}
	}
}

func newLink(ep Endpoint, timeout time.Duration) *link {
	l := &link{ep: ep, sem: make(chan struct{}, 1), onReset: func() {}, wake: make(chan struct{}, 1), noIdleClose: func() {}}
	switch ep.Transport {
	case "tcp":
		h := mb.NewTCPClientHandler(ep.Addr)
		h.Timeout = timeout
		l.client, l.closer, l.connect = mb.NewClient(h), h, h.Connect
		l.setUnit = func(u byte) { h.SlaveId = u }
		l.setTime = func(d time.Duration) { h.Timeout = d }
		l.noIdleClose = func() { h.IdleTimeout = 0 }
	case "udp":
		pk := mb.NewTCPClientHandler(ep.Addr) // used for its MBAP framing only
		tr := &udpTransport{addr: ep.Addr, timeout: timeout}
		l.client, l.closer, l.connect = mb.NewClient2(pk, tr), tr, tr.ensure
		l.setUnit = func(u byte) { pk.SlaveId = u }
		l.setTime = func(d time.Duration) { tr.timeout = d }
	case "rtu-over-tcp", "rtu":
		pk := mb.NewRTUClientHandler("") // used for its framing: CRC, unit check
		tr := &rtuTransport{timeout: timeout}
		if ep.Transport == "rtu" {
			tr.open = serialOpener(ep)
			tr.gap = frameGap(ep.Baud)
		} else {
			tr.open = func(d time.Duration) (io.ReadWriteCloser, error) {
				return net.DialTimeout("tcp", ep.Addr, d)
			}
		}
		l.client, l.closer, l.connect = mb.NewClient2(pk, tr), tr, tr.ensure
		l.setUnit = func(u byte) { pk.SlaveId = u }
		l.setTime = func(d time.Duration) { tr.timeout = d }
	case "ascii":
		h := mb.NewASCIIClientHandler(ep.Device)
		h.BaudRate, h.DataBits, h.StopBits, h.Parity = ep.Baud, ep.DataBits, ep.StopBits, ep.Parity
		h.Timeout = timeout
		h.IdleTimeout = 0
		l.client, l.closer, l.connect = mb.NewClient(h), h, h.Connect
		l.setUnit = func(u byte) { h.SlaveId = u }
		l.setTime = func(time.Duration) {} // fixed when the port opens
	default:
		panic("modbus: newLink with unvalidated transport " + ep.Transport)
	}
	return l
}

func (l *link) acquire(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return &linkError{kind: ErrClosed, cause: ctx.Err()}
	}
	if l.closed {
		<-l.sem
		return &linkError{kind: ErrClosed}
	}
	return nil
}

func (l *link) release() {
	if l.paced {
		l.lastIO = time.Now()
	}
	<-l.sem
}

// setPacing applies the pacing of a device on this link: the longest
// pause after connect of its devices counts, as they share the connection.
func (l *link) setPacing(s *settings) {
	if s.pauseConnect > l.pauseConnect {
		l.pauseConnect = s.pauseConnect
		l.noIdleClose()
	}
	if s.pauseBetween > 0 {
		l.paced = true
	}
}

// prepare opens the connection and waits pause_after_connect, when set,
// and keeps between (pause_between_requests) since the last exchange. The
// caller holds the link.
func (l *link) prepare(ctx context.Context, between time.Duration) error {
	if l.pauseConnect > 0 && !l.open {
		if err := l.connect(); err != nil {
			return l.fail(err)
		}
		l.open = true
		if err := pause(ctx, l.pauseConnect); err != nil {
			return err
		}
	}
	if between > 0 && !l.lastIO.IsZero() {
		if err := pause(ctx, between-time.Since(l.lastIO)); err != nil {
			return err
		}
	}
	return nil
}

// pause waits d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return &linkError{kind: ErrClosed, cause: ctx.Err()}
	}
}

// fail classifies err and, unless it is an exception reply, closes the
// connection (the #64 defence). The caller holds the link.
func (l *link) fail(err error) error {
	err = classify(err)
	var ee *ExceptionError
	if !errors.As(err, &ee) {
		_ = l.closer.Close()
		l.open = false
		l.onReset()
	}
	return err
}

// hangUp closes the connection after a poll cycle (close_after_poll); the
// next request opens a new one.
func (l *link) hangUp(ctx context.Context) {
	if l.acquire(ctx) != nil {
		return
	}
	_ = l.closer.Close()
	l.open = false
	l.release()
}

// read reads count addresses of area from start. Registers come back as
// their wire bytes (2 per register), bits packed 8 per byte, LSB first.
func (l *link) read(ctx context.Context, unit byte, timeout, between time.Duration, area Area, start uint16, count int) ([]byte, error) {
	if err := l.acquire(ctx); err != nil {
		return nil, err
	}
	defer l.release()
	l.setUnit(unit)
	l.setTime(timeout) // before prepare: a connect it makes waits at most this
	if err := l.prepare(ctx, between); err != nil {
		return nil, err
	}
	var data []byte
	var err error
	n := uint16(count)
	switch area {
	case Coil:
		data, err = l.client.ReadCoils(start, n)
	case Discrete:
		data, err = l.client.ReadDiscreteInputs(start, n)
	case Input:
		data, err = l.client.ReadInputRegisters(start, n)
	case Holding:
		data, err = l.client.ReadHoldingRegisters(start, n)
	}
	if err != nil {
		return nil, l.fail(err)
	}
	want := 2 * count
	if area.Bits() {
		want = (count + 7) / 8
	}
	if len(data) != want {
		return nil, l.fail(fmt.Errorf("%d data bytes for %d %s, want %d", len(data), count, unitWord(area, count), want))
	}
	return data, nil
}

// writeOp is one write: a function code and its arguments.
type writeOp struct {
	fc    byte // 5, 6, 15 or 16
	addr  uint16
	value uint16 // FC 5, 6; FC 15: 0xFF00 or 0
	data  []byte // FC 16: wire bytes of the registers
	// bitOf, for a bit tag, makes the write a read-modify-write of one
	// holding register under one hold of the link: set (or clear) bit of
	// the register read back in order.
	bit   int8 // -1: not a bit write
	set   bool
	order Order
	fc16  bool // the bit write's register goes out with FC 16
}

// write performs op and returns the device's refusal, if any.
func (l *link) write(ctx context.Context, unit byte, timeout, between time.Duration, op writeOp) error {
	if err := l.acquire(ctx); err != nil {
		return err
	}
	defer l.release()
	l.setUnit(unit)
	l.setTime(timeout) // before prepare: a connect it makes waits at most this
	if err := l.prepare(ctx, between); err != nil {
		return err
	}
	var err error
	switch {
	case op.bit >= 0:
		var cur []byte
		if cur, err = l.client.ReadHoldingRegisters(op.addr, 1); err == nil {
			if len(cur) != 2 {
				return l.fail(fmt.Errorf("%d data bytes for 1 register, want 2", len(cur)))
			}
			w := op.order.Uint(cur, 1)
			if op.set {
				w |= 1 << op.bit
			} else {
				w &^= 1 << op.bit
			}
			var b [2]byte
			op.order.PutUint(b[:], 1, w)
			if op.fc16 {
				_, err = l.client.WriteMultipleRegisters(op.addr, 1, b[:])
			} else {
				_, err = l.client.WriteSingleRegister(op.addr, binary.BigEndian.Uint16(b[:]))
			}
		}
	case op.fc == 5:
		_, err = l.client.WriteSingleCoil(op.addr, op.value)
	case op.fc == 15:
		var b byte
		if op.value != 0 {
			b = 1
		}
		_, err = l.client.WriteMultipleCoils(op.addr, 1, []byte{b})
	case op.fc == 6:
		_, err = l.client.WriteSingleRegister(op.addr, op.value)
	default:
		_, err = l.client.WriteMultipleRegisters(op.addr, uint16(len(op.data)/2), op.data)
	}
	if err != nil {
		return l.fail(err)
	}
	return nil
}

// shutdown waits for the request in flight, closes the connection and
// refuses further requests.
func (l *link) shutdown(ctx context.Context) error {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("modbus: %s: request still in flight: %w", l.ep, ctx.Err())
	}
	l.closed = true
	err := l.closer.Close()
	<-l.sem
	return err
}

// udpTransport carries Modbus TCP frames (MBAP header) in UDP datagrams,
// one request and one answer each. goburrow/modbus frames them and checks
// the answer. A datagram with another transaction ID is a late answer to
// an earlier request: it is dropped and the wait goes on, so UDP cannot
// fall out of step the way goburrow's TCP transport does (#64).
type udpTransport struct {
	addr    string
	timeout time.Duration
	conn    net.Conn
	buf     [mbapMax]byte
}

const mbapMax = 7 + 253

func (t *udpTransport) ensure() error {
	if t.conn != nil {
		return nil
	}
	c, err := net.DialTimeout("udp", t.addr, t.timeout)
	if err != nil {
		return err
	}
	t.conn = c
	return nil
}

// Send implements mb.Transporter.
func (t *udpTransport) Send(adu []byte) ([]byte, error) {
	if err := t.ensure(); err != nil {
		return nil, err
	}
	if err := t.conn.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return nil, err
	}
	if _, err := t.conn.Write(adu); err != nil {
		return nil, err
	}
	for {
		n, err := t.conn.Read(t.buf[:])
		if err != nil {
			return nil, err
		}
		b := t.buf[:n]
		if n < 8 || b[0] != adu[0] || b[1] != adu[1] {
			continue // stale or foreign: not the answer to this request
		}
		if int(binary.BigEndian.Uint16(b[4:])) != n-6 {
			return nil, fmt.Errorf("modbus: udp datagram of %d bytes, MBAP length %d", n, binary.BigEndian.Uint16(b[4:]))
		}
		return append([]byte(nil), b...), nil
	}
}

// Close closes the socket; the next Send opens a new one.
func (t *udpTransport) Close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

// rtuTransport carries RTU frames over a TCP connection (RTU over TCP) or
// a serial port. goburrow/modbus frames them (CRC, unit ID); this reads
// replies by their length as the function code announces it, without the
// fixed sleep goburrow's own serial transport takes before every read,
// which limits it to about 70% of the line at 19200 baud and 13% at
// 115200 (see the README).
type rtuTransport struct {
	open    func(timeout time.Duration) (io.ReadWriteCloser, error)
	timeout time.Duration
	gap     time.Duration // silent interval between frames on a serial line

	conn   io.ReadWriteCloser
	lastIO time.Time
	buf    [256]byte
}

func (t *rtuTransport) ensure() error {
	if t.conn == nil {
		c, err := t.open(t.timeout)
		if err != nil {
			return err
		}
		t.conn = c
	}
	return nil
}

// Send implements mb.Transporter.
func (t *rtuTransport) Send(adu []byte) ([]byte, error) {
	if err := t.ensure(); err != nil {
		return nil, err
	}
	if t.gap > 0 {
		if wait := t.gap - time.Since(t.lastIO); wait > 0 {
			time.Sleep(wait) // the line's 3.5-character silence between frames
		}
	}
	deadline := time.Now().Add(t.timeout)
	if nc, ok := t.conn.(net.Conn); ok {
		if err := nc.SetDeadline(deadline); err != nil {
			return nil, err
		}
	}
	if _, err := t.conn.Write(adu); err != nil {
		return nil, err
	}
	b := t.buf[:]
	if err := t.readFull(b[:3], deadline); err != nil {
		return nil, err
	}
	var n int
	switch fc := b[1]; {
	case fc&0x80 != 0:
		n = 5
	case fc >= 1 && fc <= 4:
		n = 5 + int(b[2])
	case fc == 5 || fc == 6 || fc == 15 || fc == 16:
		n = 8
	default:
		return nil, fmt.Errorf("modbus: unexpected function code %d in RTU reply", fc)
	}
	if err := t.readFull(b[3:n], deadline); err != nil {
		return nil, err
	}
	t.lastIO = time.Now()
	out := make([]byte, n)
	copy(out, b[:n])
	return out, nil
}

func (t *rtuTransport) readFull(b []byte, deadline time.Time) error {
	for len(b) > 0 {
		n, err := t.conn.Read(b)
		b = b[n:]
		if err != nil {
			if errors.Is(err, serial.ErrTimeout) && len(b) > 0 && time.Now().Before(deadline) {
				continue
			}
			if errors.Is(err, io.EOF) && len(b) > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// Close closes the connection; the next Send opens a new one.
func (t *rtuTransport) Close() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	return err
}

func serialOpener(ep Endpoint) func(time.Duration) (io.ReadWriteCloser, error) {
	return func(d time.Duration) (io.ReadWriteCloser, error) {
		return serial.Open(&serial.Config{
			Address: ep.Device, BaudRate: ep.Baud, DataBits: ep.DataBits,
			StopBits: ep.StopBits, Parity: ep.Parity, Timeout: d,
		})
	}
}

// charTime is the time one character takes on a serial line: start bit,
// 8 data bits, parity or a second stop bit, stop bit.
func charTime(baud int) time.Duration {
	return time.Duration(11 * float64(time.Second) / float64(baud))
}

// frameGap is the silence that separates RTU frames: 3.5 character times,
// and a fixed 1.75 ms above 19200 baud (Modbus over serial line, 2.5.1.1).
func frameGap(baud int) time.Duration {
	if baud > 19200 {
		return 1750 * time.Microsecond
	}
	return charTime(baud) * 7 / 2
}

// rtuWireLimit is the most an RTU line at baud carries when every request
// reads 125 holding registers: an 8-byte request and a 255-byte answer, each
// followed by the silence that ends a frame, and a device that answers at
// once. Real devices add their own turnaround to this.
func rtuWireLimit(baud int) (requestsPerSecond, registersPerSecond float64) {
	d := time.Duration(8+255)*charTime(baud) + 2*frameGap(baud)
	requestsPerSecond = 1 / d.Seconds()
	return requestsPerSecond, 125 * requestsPerSecond
}
