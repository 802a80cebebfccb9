package line

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/goburrow/serial"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

// lineReader reads lines of at most max bytes from a stream. A longer line
// is read to its end and discarded, so one bad sender costs one skipped
// line, not the connection.
type lineReader struct {
	br  *bufio.Reader
	max int
	acc []byte
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, min(max+1, 64<<10)), max: max}
}

// next returns the next line without its newline, valid until the next
// call. A line longer than max is read to its end and discarded: next
// reports tooLong and no line. At the end of the stream it returns the
// unterminated last line, if any, with the reader's error.
func (lr *lineReader) next() (line []byte, tooLong bool, err error) {
	lr.acc = lr.acc[:0]
	n := 0 // bytes of the line so far, without the newline
	for {
		frag, err := lr.br.ReadSlice('\n')
		content := len(frag)
		if err == nil {
			content-- // the newline
		}
		n += content
		if n > lr.max {
			tooLong = true
			lr.acc = lr.acc[:0]
		}
		switch {
		case tooLong:
		case err == nil && len(lr.acc) == 0:
			return frag[:content], false, nil // the common case: no copy
		default:
			lr.acc = append(lr.acc, frag[:content]...)
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case tooLong:
			return nil, true, err
		default:
			return lr.acc, false, err
		}
	}
}

// buffered reports whether a next line may be ready without blocking.
func (lr *lineReader) buffered() bool { return lr.br.Buffered() > 0 }

// readStream parses the lines of one stream until it ends, handing the
// records to the inbox whenever the reader would block or a batch is full.
// origin names the stream in errors and is {topic} in parse templates.
func (l *Line) readStream(r io.Reader, origin string) error {
	p, err := parse.New(l.Parse) // per stream: a CSV header belongs to its stream
	if err != nil {
		return err
	}
	lr := newLineReader(r, int(l.MaxLine))
	var b bus.Batch
	for {
		line, tooLong, err := lr.next()
		switch {
		case tooLong:
			l.parseError(origin, fmt.Errorf("%w: %w: more than max_line (%d bytes)", parse.ErrParse, ErrLineTooLong, l.MaxLine))
		case len(line) > 0:
			l.parseLine(p, line, origin, &b)
		}
		if err != nil {
			l.put(&b)
			return err
		}
		if len(b.Records) >= l.BatchSize || !lr.buffered() {
			l.put(&b)
		}
	}
}

// errStopping refuses a stream once Stop has begun.
var errStopping = errors.New("stopping")

// readCounted is readStream for a goroutine Stop must wait for.
func (l *Line) readCounted(r io.Reader, origin string) error {
	if !l.enter() {
		return errStopping
	}
	defer l.leave()
	return l.readStream(r, origin)
}

// --- TCP listener ---

func (l *Line) listen() error {
	ln, err := net.Listen("tcp", l.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", l.Listen, err)
	}
	l.bound()
	l.mu.Lock()
	l.ln = ln
	close(l.listening)
	l.mu.Unlock()
	l.slots = make(chan struct{}, l.MaxClients)
	l.env.Logger.Info("listening", "addr", ln.Addr().String(), "max_clients", l.MaxClients,
		"idle_timeout", l.IdleTimeout.String(), "evict_idle", l.EvictIdle.String())
	l.env.Up()
	l.env.Go("accept", l.accept)
	return nil
}

// accept serves clients until Stop closes the listener. Each client gets
// its own goroutine and parser; a client that misbehaves costs its lines or
// its connection, never the listener. The client slots and goroutines
// belong to the Line, not to one run of accept: when the Env restarts
// accept, connected clients go on and keep their slots.
func (l *Line) accept(context.Context) error {
	ctx := l.ctx
	var bo connectors.Backoff
	bo.Max = time.Second
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait, do not spin.
			l.env.Error(fmt.Errorf("accept on %s: %w", l.ln.Addr(), err))
			if connectors.Sleep(ctx, bo.Next()) != nil {
				return nil
			}
			continue
		}
		bo.Reset()
		if !l.admit(ctx, c) {
			continue
		}
		if !l.enter() { // Stop has begun
			<-l.slots
			_ = c.Close()
			return nil
		}
		cl := &client{c: c}
		cl.last.Store(time.Now().UnixNano())
		l.track(c, cl, true)
		l.clients.Inc()
		go func() {
			defer l.leave()
			defer func() { <-l.slots }()
			defer l.clients.Dec()
			defer l.track(c, nil, false)
			defer c.Close()
			l.serveClient(ctx, cl)
		}()
	}
}

// evictWait bounds how long a newcomer waits for the slot of the client it
// displaced: that client's goroutine may be handing its last lines on.
const evictWait = time.Second

// admit takes a client slot for c. With max_clients connected, c takes the
// slot of the client silent the longest, if that one has been silent for
// evict_idle: idle sockets (a port scanner, a shim that hung) cannot lock
// good clients out. Otherwise c is refused.
func (l *Line) admit(ctx context.Context, c net.Conn) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	if victim := l.longestIdle(l.EvictIdle.D()); victim != nil {
		victim.evicted.Store(true)
		_ = victim.c.Close()
		l.closed(reasonEvicted, fmt.Errorf("client %s closed after %s without a line, for newcomer %s: max_clients (%d) are connected",
			victim.c.RemoteAddr(), time.Since(time.Unix(0, victim.last.Load())).Round(time.Millisecond), c.RemoteAddr(), l.MaxClients))
		t := time.NewTimer(evictWait)
		defer t.Stop()
		select {
		case l.slots <- struct{}{}:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
	}
	l.closed(reasonRefused, fmt.Errorf("client %s refused: max_clients (%d) are connected", c.RemoteAddr(), l.MaxClients))
	_ = c.Close()
	return false
}

// longestIdle returns the listener's client that has been silent the
// longest, if for at least min.
func (l *Line) longestIdle(min time.Duration) *client {
	l.mu.Lock()
	defer l.mu.Unlock()
	var oldest *client
	for _, cl := range l.conns {
		if cl != nil && !cl.evicted.Load() && (oldest == nil || cl.last.Load() < oldest.last.Load()) {
			oldest = cl
		}
	}
	if oldest == nil || time.Since(time.Unix(0, oldest.last.Load())) < min {
		return nil
	}
	return oldest
}

// Reasons a listener closed or refused a client, the reason label of
// ferry_line_clients_closed_total.
const (
	reasonIdle    = "idle_timeout"
	reasonEvicted = "evicted"
	reasonRefused = "refused"
)

// closed counts a client the listener closed or refused, and logs it once
// per window for each reason.
func (l *Line) closed(reason string, err error) {
	l.closedTotal.WithLabelValues(l.env.Name, reason).Inc()
	if reason == reasonRefused {
		l.env.Error(err) // the connector's errors: a good client may be waiting
		return
	}
	l.limitLog(reason).Log(l.env.Logger, slog.LevelInfo, "client closed",
		slog.String("reason", reason), slog.String("detail", err.Error()))
}

// client is one connection to the listener.
type client struct {
	c       net.Conn
	last    atomic.Int64 // unix nanoseconds of the connect or the last read with data
	evicted atomic.Bool
}

// idleReader reads a client with a deadline of idle_timeout per read, and
// notes when data last came.
type idleReader struct {
	cl      *client
	timeout time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	_ = r.cl.c.SetReadDeadline(time.Now().Add(r.timeout))
	n, err := r.cl.c.Read(p)
	if n > 0 {
		r.cl.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (l *Line) serveClient(ctx context.Context, cl *client) {
	c := cl.c
	defer func() {
		if p := recover(); p != nil {
			l.env.Error(fmt.Errorf("client %s: panic: %v", c.RemoteAddr(), p))
		}
	}()
	origin := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(origin); err == nil {
		origin = host
	}
	l.env.Logger.Debug("client connected", "remote", c.RemoteAddr().String())
	err := l.readStream(&idleReader{cl: cl, timeout: l.IdleTimeout.D()}, origin)
	switch {
	case ctx.Err() != nil || cl.evicted.Load():
	case errors.Is(err, os.ErrDeadlineExceeded):
		l.closed(reasonIdle, fmt.Errorf("client %s sent nothing for idle_timeout (%s)", c.RemoteAddr(), l.IdleTimeout))
	case err != nil && !errors.Is(err, io.EOF):
		l.env.Logger.Debug("client gone", "remote", c.RemoteAddr().String(), "error", err.Error())
	}
}

// --- TCP client ---

// connect keeps one connection to the feed, reconnecting with back-off and
// jitter; the connector is up while connected.
func (l *Line) connect(context.Context) error {
	ctx := l.ctx
	bo := connectors.Backoff{Max: l.MaxBackoff.D()}
	d := net.Dialer{Timeout: l.DialTimeout.D(), KeepAlive: 15 * time.Second}
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", l.Connect)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			l.env.Down(fmt.Errorf("connect %s: %w", l.Connect, err))
			if connectors.Sleep(ctx, bo.Next()) != nil {
				return nil
			}
			continue
		}
		bo.Reset()
		err = l.serveConn(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			err = errors.New("closed by the peer")
		}
		l.env.Down(fmt.Errorf("connection to %s: %w", l.Connect, err))
		if connectors.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
	return nil
}

// serveConn reads one connection of the TCP client until it ends. The
// connection is closed and forgotten however readStream ends, a panic
// included: the Env restarts connect, which dials a new one.
func (l *Line) serveConn(ctx context.Context, c net.Conn) error {
	l.track(c, nil, true)
	defer l.track(c, nil, false)
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	l.env.Up()
	return l.readCounted(c, l.Connect)
}

// --- serial port ---

// serialPoll bounds a read of the serial port, so that Stop is noticed.
const serialPoll = 200 * time.Millisecond

// serial keeps the port open, reopening it with back-off when it fails (a
// USB adapter unplugged).
func (l *Line) serial(context.Context) error {
	ctx := l.ctx
	s := l.Serial
	bo := connectors.Backoff{Max: l.MaxBackoff.D()}
	for ctx.Err() == nil {
		port, err := serial.Open(&serial.Config{
			Address: s.Device, BaudRate: s.Baud, DataBits: s.DataBits,
			StopBits: s.StopBits, Parity: s.Parity, Timeout: serialPoll,
		})
		if err != nil {
			l.env.Down(fmt.Errorf("open %s: %w", s.Device, err))
			if connectors.Sleep(ctx, bo.Next()) != nil {
				return nil
			}
			continue
		}
		bo.Reset()
		l.env.Up()
		err = func() error {
			defer port.Close() // a panic included: the Env reopens it
			return l.readCounted(&pollReader{ctx: ctx, r: port}, s.Device)
		}()
		if ctx.Err() != nil {
			return nil
		}
		l.env.Down(fmt.Errorf("read %s: %w", s.Device, err))
		if connectors.Sleep(ctx, bo.Next()) != nil {
			return nil
		}
	}
	return nil
}

// pollReader reads a port whose reads time out, retrying timeouts until ctx
// ends; an empty read is the end of the stream (a pty whose other side
// closed). The line reading itself is the same as for TCP.
type pollReader struct {
	ctx context.Context
	r   io.Reader
}

func (p *pollReader) Read(b []byte) (int, error) {
	for {
		if err := p.ctx.Err(); err != nil {
			return 0, err
		}
		n, err := p.r.Read(b)
		if errors.Is(err, serial.ErrTimeout) {
			continue
		}
		if n == 0 && err == nil {
			return 0, io.EOF
		}
		return n, err
	}
}

// put moves the records of b into the batcher, waiting while it is full;
// a full batcher stops the readers, which pushes back on the senders
// through TCP instead of growing memory.
func (l *Line) put(b *bus.Batch) {
	if len(b.Records) == 0 {
		return
	}
	_ = l.in.Add(func(dst *bus.Batch) error {
		dst.Records = append(dst.Records, b.Records...)
		return nil
	})
	b.Reset()
}
