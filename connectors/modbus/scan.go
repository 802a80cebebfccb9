package modbus

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
)

// Conn is a connection to one endpoint for one-off reads, such as
// `ferry scan`. It uses the same transports as the connector, including the
// reconnect after a failed exchange. It is not safe for concurrent use.
type Conn struct {
	l       *link
	timeout time.Duration
}

// Open prepares a connection to endpoint (a URL as in the config); the
// connection itself is made by the first read.
func Open(endpoint string, timeout time.Duration) (*Conn, error) {
	ep, err := ParseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Conn{l: newLink(ep, timeout), timeout: timeout}, nil
}

// Registers reads count registers of area (Input or Holding) from start,
// in as many requests as the protocol needs (125 registers each). It
// returns the values read so far with the error.
func (c *Conn) Registers(ctx context.Context, unit uint8, area Area, start, count int) ([]uint16, int, error) {
	if area.Bits() {
		return nil, 0, fmt.Errorf("modbus: %s is not a register area", area)
	}
	out := make([]uint16, 0, count)
	reqs, err := c.readChunks(ctx, unit, area, start, count, func(data []byte, n int) {
		for i := range n {
			out = append(out, binary.BigEndian.Uint16(data[2*i:]))
		}
	})
	return out, reqs, err
}

// Bits reads count coils or discrete inputs from start.
func (c *Conn) Bits(ctx context.Context, unit uint8, area Area, start, count int) ([]bool, int, error) {
	if !area.Bits() {
		return nil, 0, fmt.Errorf("modbus: %s is not a bit area", area)
	}
	out := make([]bool, 0, count)
	reqs, err := c.readChunks(ctx, unit, area, start, count, func(data []byte, n int) {
		for i := range n {
			out = append(out, data[i/8]>>(i%8)&1 != 0)
		}
	})
	return out, reqs, err
}

// readChunks reads count items of area from start in requests of at most
// the protocol's limit, handing each answer (and how many items it holds)
// to take; it returns the number of requests made.
func (c *Conn) readChunks(ctx context.Context, unit uint8, area Area, start, count int, take func(data []byte, n int)) (int, error) {
	reqs := 0
	for done := 0; done < count; {
		n := min(count-done, area.Limit())
		reqs++
		data, err := c.l.read(ctx, unit, c.timeout, 0, area, uint16(start+done), n)
		if err != nil {
			return reqs, &RequestError{Device: c.l.ep.String(), Op: "read", Area: area, Start: start + done, Count: n, Err: err}
		}
		take(data, n)
		done += n
	}
	return reqs, nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.l.shutdown(context.Background()) }
