package modbus

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mb "github.com/goburrow/modbus"
)

// testCtx is a context that ends with the test, or after 20 s.
func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// start runs a server for the test; Tick defaults to an hour so signals
// only move when the test calls UpdateSignals.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Tick == 0 {
		cfg.Tick = time.Hour
	}
	s, err := Start(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// dial returns a goburrow client for unit on s.
func dial(t *testing.T, s *Server, unit uint8, timeout time.Duration) (mb.Client, *mb.TCPClientHandler) {
	t.Helper()
	h := mb.NewTCPClientHandler(s.Addr())
	h.SlaveId = unit
	h.Timeout = timeout
	h.IdleTimeout = 0 // no background close timer
	t.Cleanup(func() { _ = h.Close() })
	return mb.NewClient(h), h
}

// regsOf splits a register read reply into registers.
func regsOf(b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return out
}

// wantException fails unless err is a Modbus exception with code.
func wantException(t *testing.T, err error, code ExceptionCode) {
	t.Helper()
	var me *mb.ModbusError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v, want exception %#x", err, byte(code))
	}
	if me.ExceptionCode != byte(code) {
		t.Fatalf("exception = %#x, want %#x (%v)", me.ExceptionCode, byte(code), code)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// raw is a bare TCP connection for frames the goburrow client would not
// send or would not let a test inspect.
type raw struct {
	t *testing.T
	c net.Conn
}

func dialRaw(t *testing.T, s *Server) *raw {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(testCtx(t), "tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return &raw{t: t, c: c}
}

func (r *raw) send(txn uint16, unit byte, pdu ...byte) {
	r.t.Helper()
	f := make([]byte, 7, 7+len(pdu))
	binary.BigEndian.PutUint16(f[0:], txn)
	binary.BigEndian.PutUint16(f[4:], uint16(len(pdu)+1))
	f[6] = unit
	if _, err := r.c.Write(append(f, pdu...)); err != nil {
		r.t.Fatal(err)
	}
}

// recv reads one reply frame: transaction ID, unit and PDU.
func (r *raw) recv() (txn uint16, unit byte, pdu []byte, err error) {
	var h [7]byte
	if _, err = io.ReadFull(r.c, h[:]); err != nil {
		return
	}
	pdu = make([]byte, int(binary.BigEndian.Uint16(h[4:]))-1)
	_, err = io.ReadFull(r.c, pdu)
	return binary.BigEndian.Uint16(h[0:]), h[6], pdu, err
}

// wire returns the byte pattern an Order stands for at a size, in the
// telegraf style: position i on the wire holds value byte pattern[i]
// ('A' = most significant). It is written independently of the package's
// encoder so the round trips check one against the other.
func wire(o Order, nbytes int) string {
	switch nbytes {
	case 2:
		if o == BADC || o == DCBA {
			return "BA"
		}
		return "AB"
	case 4:
		return string(o)
	}
	return map[Order]string{ABCD: "ABCDEFGH", CDAB: "GHEFCDAB", BADC: "BADCFEHG", DCBA: "HGFEDCBA"}[o]
}

// fromWire rebuilds the big-endian value from the bytes received.
func fromWire(b []byte, o Order) uint64 {
	p := wire(o, len(b))
	var v uint64
	for k := range len(b) {
		v = v<<8 | uint64(b[strings.IndexByte(p, byte('A'+k))])
	}
	return v
}

// toWire lays the low nbytes of v out as o says.
func toWire(v uint64, nbytes int, o Order) []byte {
	p := wire(o, nbytes)
	b := make([]byte, nbytes)
	for i := range nbytes {
		k := int(p[i] - 'A')
		b[i] = byte(v >> (8 * (nbytes - 1 - k)))
	}
	return b
}

// lockedWriter is an io.Writer safe for the logger's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
