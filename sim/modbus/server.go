package modbus

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a running Modbus TCP simulator. Its methods are safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	faults *faults
	quirks quirkState
	cnt    counters
	udp    net.PacketConn // nil unless Config.UDP

	unitMu sync.RWMutex
	units  map[uint8]*Unit

	sigMu   sync.Mutex
	signals map[signalKey]*signal

	// life cycle
	restartMu sync.Mutex // serialises Restart and Close
	mu        sync.Mutex // guards the fields below
	addr      string     // bound address, fixed after the first listen
	ln        net.Listener
	conns     map[net.Conn]struct{}
	stop      chan struct{} // closed to stop the current listener generation
	connWG    sync.WaitGroup
	closed    bool
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	stopCtx   func() bool
}

// Start validates cfg, programs the register bank, listens on cfg.Addr and
// serves until Close is called or ctx is done. It logs the listening
// address.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		faults:  newFaults(),
		units:   map[uint8]*Unit{},
		signals: map[signalKey]*signal{},
		conns:   map[net.Conn]struct{}{},
		done:    make(chan struct{}),
		addr:    cfg.Addr,
	}
	for _, u := range cfg.Units {
		u.setDefaults()
		s.Unit(u.ID)
		if u.MaxRegisters > 0 {
			s.SetMaxRegisters(u.ID, u.MaxRegisters, u.MaxRegistersCode)
		}
		for _, r := range u.Registers {
			if err := s.Apply(u.ID, r); err != nil {
				return nil, err
			}
		}
	}
	if err := s.listen(ctx); err != nil {
		return nil, err
	}
	if cfg.UDP {
		if err := s.listenUDP(ctx); err != nil {
			s.stopListening()
			return nil, err
		}
	}
	s.wg.Add(1)
	go s.runSignals()
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Close() })
	return s, nil
}

// Addr returns the address the server listens on, with the real port when
// Config.Addr asked for port 0. It stays the same across Restart.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Unit returns the register bank of unit id, adding the unit (empty) if the
// server did not answer for it yet.
func (s *Server) Unit(id uint8) *Unit {
	s.unitMu.RLock()
	u := s.units[id]
	s.unitMu.RUnlock()
	if u != nil {
		return u
	}
	s.unitMu.Lock()
	defer s.unitMu.Unlock()
	if u = s.units[id]; u == nil {
		u = newUnit(id)
		s.units[id] = u
	}
	return u
}

func (s *Server) lookupUnit(id uint8) *Unit {
	s.unitMu.RLock()
	defer s.unitMu.RUnlock()
	return s.units[id]
}

// Close stops the server: the listener, every connection and the signal
// ticker. It waits for them to finish. It is safe to call more than once.
func (s *Server) Close() error {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if s.stopCtx != nil {
		s.stopCtx()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
	s.stopListening()
	s.wg.Wait()
	s.log.Info("modbus sim stopped", "addr", s.Addr())
	return nil
}

// Restart closes the listener and every connection, as a device power
// cycle would, and listens again on the same address. Bank, signals,
// faults and counters are kept. ctx bounds the wait for the port to be free
// again. It returns ErrClosed after Close.
func (s *Server) Restart(ctx context.Context) error {
	s.restartMu.Lock()
	defer s.restartMu.Unlock()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	s.stopListening()
	return s.listen(ctx)
}

// DropConnections closes every open client connection now; the listener
// stays up, so clients can reconnect at once.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// listen binds s.addr, retrying while the port is busy until ctx is done,
// and starts accepting. The caller holds restartMu (or is Start).
func (s *Server) listen(ctx context.Context) error {
	var lc net.ListenConfig
	var ln net.Listener
	var err error
	for {
		ln, err = lc.Listen(ctx, "tcp", s.Addr())
		if err == nil {
			break
		}
		if s.ln == nil || ctx.Err() != nil {
			// First listen: a wrong address is not worth retrying.
			return fmt.Errorf("modbus sim: listen on %s: %w", s.Addr(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("modbus sim: listen on %s again: %w", s.Addr(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop := make(chan struct{})
	s.mu.Lock()
	first := s.ln == nil
	s.ln = ln
	s.addr = ln.Addr().String()
	s.stop = stop
	s.mu.Unlock()
	if first {
		s.log.Info("modbus sim listening", "addr", s.addr)
	} else {
		s.log.Info("modbus sim listening again", "addr", s.addr)
	}
	s.connWG.Add(1)
	go s.accept(ln, stop)
	return nil
}

// stopListening closes the listener and all connections and waits for their
// goroutines.
func (s *Server) stopListening() {
	s.mu.Lock()
	if s.stop != nil {
		select {
		case <-s.stop:
		default:
			close(s.stop)
		}
	}
	if s.ln != nil {
		_ = s.ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.connWG.Wait()
}

func (s *Server) accept(ln net.Listener, stop chan struct{}) {
	defer s.connWG.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("modbus sim accept failed", "addr", ln.Addr().String(), "err", err)
			return
		}
		s.mu.Lock()
		select {
		case <-stop:
			s.mu.Unlock()
			_ = c.Close()
			return
		default:
		}
		if n := s.maxConns(); n > 0 && len(s.conns) >= n {
			s.mu.Unlock()
			_ = c.Close() // a gateway out of connections
			s.cnt.refused.Add(1)
			continue
		}
		s.conns[c] = struct{}{}
		if n := uint64(len(s.conns)); n > s.cnt.peak.Load() {
			s.cnt.peak.Store(n) // under s.mu
		}
		s.connWG.Add(1)
		s.mu.Unlock()
		s.cnt.connections.Add(1)
		go s.serve(c, stop)
	}
}

const (
	mbapHeader = 7
	maxPDU     = 253
)

// serve answers the requests on one connection, one at a time.
func (s *Server) serve(c net.Conn, stop chan struct{}) {
	defer s.connWG.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		_ = c.Close()
	}()
	remote := c.RemoteAddr().String()
	s.log.Debug("modbus sim client connected", "remote", remote)
	defer s.log.Debug("modbus sim client disconnected", "remote", remote)

	r := bufio.NewReaderSize(c, 512)
	var hdr [mbapHeader]byte
	var pdu [maxPDU]byte
	out := make([]byte, 0, mbapHeader+maxPDU)
	accepted := time.Now()
	var replied time.Time
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		if now := time.Now(); replied.IsZero() {
			s.cnt.afterConnect.observe(now.Sub(accepted))
		} else {
			s.cnt.requestGap.observe(now.Sub(replied))
		}
		txn := binary.BigEndian.Uint16(hdr[0:])
		proto := binary.BigEndian.Uint16(hdr[2:])
		length := int(binary.BigEndian.Uint16(hdr[4:]))
		unit := hdr[6]
		if proto != 0 || length < 2 || length > maxPDU+1 {
			// Not Modbus TCP; there is no way to find the next frame.
			s.log.Debug("modbus sim dropped a client sending a bad MBAP header",
				"remote", remote, "protocol", proto, "length", length)
			return
		}
		req := pdu[:length-1]
		if _, err := io.ReadFull(r, req); err != nil {
			return
		}
		q := parseRequest(req)
		v := s.faults.decide(unit, q.fc, q.area, q.addr, q.qty)
		if v.drop {
			s.cnt.unanswered.Add(1)
			s.log.Debug("modbus sim dropping connection (fault)", "remote", remote)
			return
		}
		if v.silent {
			s.cnt.unanswered.Add(1)
			continue
		}
		if !delay(v.delay, stop) {
			return
		}
		out = s.reply(out, txn, unit, q, v)
		if v.malform == TruncatedFrame {
			cut := mbapHeader + (len(out)-mbapHeader)/2
			_, _ = c.Write(out[:cut])
			s.log.Debug("modbus sim sent a truncated frame and closed the connection (fault)", "remote", remote)
			return
		}
		if _, err := c.Write(out); err != nil {
			return
		}
		replied = time.Now()
	}
}

// reply executes q into out (whose first mbapHeader bytes it overwrites)
// and frames the answer for transaction txn, with the verdict's malformed
// header or PDU when it has one: the one framing of the TCP and UDP
// transports. A truncated frame is the caller's to cut.
func (s *Server) reply(out []byte, txn uint16, unit byte, q request, v verdict) []byte {
	out, exc := s.execute(out[:mbapHeader], unit, q, v.exception)
	s.cnt.count(unit, q.fc, exc != 0)
	binary.BigEndian.PutUint16(out[0:], txn)
	binary.BigEndian.PutUint16(out[2:], 0)
	out[6] = unit
	switch v.malform {
	case ShortPDU:
		out = out[:len(out)-1]
	case WrongTransactionID:
		binary.BigEndian.PutUint16(out[0:], txn+1)
	}
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-mbapHeader+1))
	return out
}

// request is a decoded request PDU.
type request struct {
	fc   byte
	area Area   // "" when fc is unsupported
	addr uint16 // first address
	qty  int    // addresses touched
	data []byte // the rest of the PDU after address and quantity/value
	// bad is the exception for a request that does not follow the
	// protocol (0 = fine).
	bad ExceptionCode
}

// parseRequest decodes p (function code and data) and checks it against
// the protocol's limits.
func parseRequest(p []byte) request {
	q := request{fc: p[0]}
	d := p[1:]
	var maxQty int
	switch q.fc {
	case 1, 2, 15:
		q.area, maxQty = Coil, 2000
		if q.fc == 2 {
			q.area = Discrete
		}
		if q.fc == 15 {
			maxQty = 1968
		}
	case 3, 4, 16:
		q.area, maxQty = Holding, 125
		if q.fc == 4 {
			q.area = Input
		}
		if q.fc == 16 {
			maxQty = 123
		}
	case 5:
		q.area = Coil
	case 6:
		q.area = Holding
	default:
		q.bad = IllegalFunction
		return q
	}
	if len(d) < 4 {
		q.bad = IllegalDataValue
		return q
	}
	q.addr = binary.BigEndian.Uint16(d)
	q.data = d[4:]
	switch q.fc {
	case 5, 6:
		q.qty = 1
		q.data = d[2:4]
		if len(d) != 4 {
			q.bad = IllegalDataValue
		} else if v := binary.BigEndian.Uint16(d[2:]); q.fc == 5 && v != 0xFF00 && v != 0 {
			q.bad = IllegalDataValue
		}
		return q
	}
	q.qty = int(binary.BigEndian.Uint16(d[2:]))
	switch {
	case q.qty < 1 || q.qty > maxQty:
		q.bad = IllegalDataValue
	case int(q.addr)+q.qty > 1<<16:
		q.bad = IllegalDataAddress
	case q.fc == 15 || q.fc == 16:
		want := (q.qty + 7) / 8
		if q.fc == 16 {
			want = 2 * q.qty
		}
		if len(q.data) < 1 || int(q.data[0]) != want || len(q.data) != 1+want {
			q.bad = IllegalDataValue
		} else {
			q.data = q.data[1:]
		}
	case len(q.data) != 0:
		q.bad = IllegalDataValue
	}
	return q
}

// execute appends the response PDU for q to out and returns it with the
// exception code sent (0 for a normal response). exc is an exception a
// fault decided on.
func (s *Server) execute(out []byte, unitID uint8, q request, exc ExceptionCode) ([]byte, ExceptionCode) {
	if q.bad != 0 {
		exc = q.bad
	} else if r := s.rejected(q.fc); r != 0 && exc == 0 {
		exc = r
	} else if u := s.lookupUnit(unitID); u == nil {
		exc = GatewayTargetNoResponse
	} else if exc == 0 {
		return s.perform(out, u, q), 0
	}
	return append(out, q.fc|0x80, byte(exc)), exc
}

// perform runs a valid request against u.
func (s *Server) perform(out []byte, u *Unit, q request) []byte {
	out = append(out, q.fc)
	a := int(q.addr)
	switch q.fc {
	case 1, 2:
		b := u.Bits(q.area)
		n := (q.qty + 7) / 8
		out = append(out, byte(n))
		start := len(out)
		out = append(out, make([]byte, n)...)
		b.mu.RLock()
		for i := range q.qty {
			if p := b.pages[(a+i)/pageSize]; p != nil && p[(a+i)%pageSize] {
				out[start+i/8] |= 1 << (i % 8)
			}
		}
		b.mu.RUnlock()
	case 3, 4:
		r := u.Registers(q.area)
		out = append(out, byte(2*q.qty))
		r.mu.RLock()
		for i := range q.qty {
			var v uint16
			if p := r.pages[(a+i)/pageSize]; p != nil {
				v = p[(a+i)%pageSize]
			}
			out = binary.BigEndian.AppendUint16(out, v)
		}
		r.mu.RUnlock()
	case 5:
		if s.keeps(u.id, Coil, q.addr, 1) {
			u.coils.Set(q.addr, q.data[0] == 0xFF)
		}
		out = binary.BigEndian.AppendUint16(out, q.addr)
		out = append(out, q.data...)
	case 6:
		if s.keeps(u.id, Holding, q.addr, 1) {
			u.holding.Set(q.addr, binary.BigEndian.Uint16(q.data))
		}
		out = binary.BigEndian.AppendUint16(out, q.addr)
		out = append(out, q.data...)
	case 15:
		vals := make([]bool, q.qty)
		for i := range vals {
			vals[i] = q.data[i/8]&(1<<(i%8)) != 0
		}
		if s.keeps(u.id, Coil, q.addr, q.qty) {
			u.coils.Set(q.addr, vals...)
		}
		out = binary.BigEndian.AppendUint16(out, q.addr)
		out = binary.BigEndian.AppendUint16(out, uint16(q.qty))
	case 16:
		vals := make([]uint16, q.qty)
		for i := range vals {
			vals[i] = binary.BigEndian.Uint16(q.data[2*i:])
		}
		if s.keeps(u.id, Holding, q.addr, q.qty) {
			u.holding.Set(q.addr, vals...)
		}
		out = binary.BigEndian.AppendUint16(out, q.addr)
		out = binary.BigEndian.AppendUint16(out, uint16(q.qty))
	}
	return out
}

// Counters is a snapshot of what the server has done since it started or
// since the last ResetCounters.
type Counters struct {
	// Requests is the number of requests answered, with data or with an
	// exception.
	Requests uint64
	// ByFunction counts answered requests per function code (the request's
	// code, also for exception replies). Codes never seen are absent.
	ByFunction map[byte]uint64
	// ByUnit counts answered requests per unit ID.
	ByUnit map[uint8]uint64
	// Exceptions is the number of exception replies among Requests.
	Exceptions uint64
	// Unanswered counts requests read but never answered (silent, or
	// the request on which a connection was dropped).
	Unanswered uint64
	// Connections counts accepted client connections; Refused those
	// closed at once for SetMaxConnections; PeakConnections is the most
	// open at one time.
	Connections, Refused, PeakConnections uint64
	// FirstRequestAfter is the shortest time from accepting a connection
	// to its first request; RequestGap the shortest from a reply to the
	// next request on the same connection (0: none seen). They show a
	// client's pauses on the device's side.
	FirstRequestAfter, RequestGap time.Duration
}

type counters struct {
	requests, exceptions, unanswered, connections atomic.Uint64
	refused, peak                                 atomic.Uint64
	afterConnect, requestGap                      minGap
	byFC, byUnit                                  [256]atomic.Uint64
}

func (c *counters) count(unit, fc byte, exception bool) {
	c.byFC[fc].Add(1)
	c.byUnit[unit].Add(1)
	if exception {
		c.exceptions.Add(1)
	}
	c.requests.Add(1) // last: a reader that sees it sees the rest
}

// Counters returns a snapshot of the request counters. Counts are updated
// before the reply is sent, so a client that got its answer sees its
// request counted.
func (s *Server) Counters() Counters {
	c := Counters{
		Requests:    s.cnt.requests.Load(),
		Exceptions:  s.cnt.exceptions.Load(),
		Unanswered:  s.cnt.unanswered.Load(),
		Connections: s.cnt.connections.Load(),
		Refused:     s.cnt.refused.Load(), PeakConnections: s.cnt.peak.Load(),
		FirstRequestAfter: s.cnt.afterConnect.get(), RequestGap: s.cnt.requestGap.get(),
		ByFunction: map[byte]uint64{},
		ByUnit:     map[uint8]uint64{},
	}
	for i := range 256 {
		if n := s.cnt.byFC[i].Load(); n > 0 {
			c.ByFunction[byte(i)] = n
		}
		if n := s.cnt.byUnit[i].Load(); n > 0 {
			c.ByUnit[uint8(i)] = n
		}
	}
	return c
}

// ResetCounters sets every counter to zero.
func (s *Server) ResetCounters() {
	s.cnt.requests.Store(0)
	s.cnt.exceptions.Store(0)
	s.cnt.unanswered.Store(0)
	s.cnt.connections.Store(0)
	s.cnt.refused.Store(0)
	s.cnt.peak.Store(0)
	s.cnt.afterConnect.ns.Store(0)
	s.cnt.requestGap.ns.Store(0)
	for i := range 256 {
		s.cnt.byFC[i].Store(0)
		s.cnt.byUnit[i].Store(0)
	}
}

// delay holds an answer back for d (a fault's delay); it reports false
// when stop closes first, and the answer is not to be sent.
func delay(d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
