package modbus

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"

	mb "github.com/goburrow/modbus"
	"github.com/goburrow/serial"

	"github.com/ferry-gateway/ferry/connectors"
)

var (
	// ErrNoAnswer: the device did not answer within its timeout.
	ErrNoAnswer = errors.New("no answer")
	// ErrMalformed: the answer was not a valid Modbus response to the
	// request (short, wrong length, wrong transaction ID, bad CRC).
	ErrMalformed = errors.New("malformed response")
	// ErrInvalidValue: a value given for write-back does not fit the tag.
	ErrInvalidValue = errors.New("invalid value")
	// ErrClosed: the connector was stopped.
	ErrClosed = errors.New("connector stopped")
	// ErrNotKept: the device confirmed a write but read back another
	// value (verify_writes).
	ErrNotKept = errors.New("device did not keep the written value")
)

// NotKeptError is a write the device confirmed and did not keep: read
// back at once, the tag held another value.
type NotKeptError struct {
	Device, Tag string
	Wrote, Read string
}

func (e *NotKeptError) Error() string {
	return e.Device + "/" + e.Tag + ": " + ErrNotKept.Error() + ": wrote " + e.Wrote + ", read back " + e.Read
}

func (e *NotKeptError) Unwrap() error { return ErrNotKept }

// Record.Status values for BAD records that carry no Modbus exception code
// (exception codes are 1..255).
const (
	StatusNoAnswer     uint32 = 0x100 // the device did not answer in time
	StatusNotConnected uint32 = 0x101 // no connection to the endpoint
	StatusMalformed    uint32 = 0x102 // the answer was malformed or out of step
	StatusBadValue     uint32 = 0x103 // the registers hold no value of the tag's type (BCD)
)

// ExceptionError is a Modbus exception response: the device answered, and
// refused.
type ExceptionError struct {
	Function byte // the request's function code
	Code     byte
}

func (e *ExceptionError) Error() string {
	return "exception " + hex2(e.Code) + " (" + ExceptionName(e.Code) + ")"
}

// ExceptionName names a Modbus exception code.
func ExceptionName(code byte) string {
	switch code {
	case 1:
		return "illegal function"
	case 2:
		return "illegal data address"
	case 3:
		return "illegal data value"
	case 4:
		return "server device failure"
	case 5:
		return "acknowledge"
	case 6:
		return "server device busy"
	case 8:
		return "memory parity error"
	case 10:
		return "gateway path unavailable"
	case 11:
		return "gateway target device failed to respond"
	}
	return "unknown exception"
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return "0x" + string([]byte{digits[b>>4], digits[b&15]})
}

// linkError is a failure of the exchange itself: no answer, a lost
// connection, or an answer that makes no sense. The connection is closed
// after one, so the next request starts in step.
type linkError struct {
	kind  error // ErrNoAnswer, ErrMalformed or connectors.ErrNotConnected
	cause error
}

func (e *linkError) Error() string {
	if e.cause == nil {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.cause.Error()
}

func (e *linkError) Unwrap() []error { return []error{e.kind, e.cause} }

// classify turns an error from goburrow/modbus into an ExceptionError or a
// linkError.
func classify(err error) error {
	var me *mb.ModbusError
	if errors.As(err, &me) {
		return &ExceptionError{Function: me.FunctionCode &^ 0x80, Code: me.ExceptionCode}
	}
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, serial.ErrTimeout), errors.Is(err, os.ErrDeadlineExceeded):
		return &linkError{kind: ErrNoAnswer, cause: err}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return &linkError{kind: connectors.ErrNotConnected, cause: err}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return &linkError{kind: connectors.ErrNotConnected, cause: err}
	}
	return &linkError{kind: ErrMalformed, cause: err}
}

// statusOf is the Record.Status for a failure.
func statusOf(err error) uint32 {
	var ee *ExceptionError
	switch {
	case errors.As(err, &ee):
		return uint32(ee.Code)
	case errors.Is(err, ErrNoAnswer):
		return StatusNoAnswer
	case errors.Is(err, connectors.ErrNotConnected), errors.Is(err, ErrClosed):
		return StatusNotConnected
	}
	return StatusMalformed
}

// RequestError says which device and addresses a failure concerns.
type RequestError struct {
	Device string
	Op     string // "read" or "write"
	Area   Area
	Start  int
	Count  int
	Err    error
}

func (e *RequestError) Error() string {
	var b strings.Builder
	b.WriteString(e.Device)
	b.WriteString(": ")
	b.WriteString(e.Op)
	b.WriteByte(' ')
	b.WriteString(e.Area.String())
	b.WriteByte(' ')
	b.WriteString(span(e.Start, e.Count))
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RequestError) Unwrap() error { return e.Err }
