// Package line is a source of legacy line-oriented feeds: a TCP listener
// many shims connect to, a TCP client that connects to a device, a serial
// port, or a tailed log file that follows rotation and remembers its offset
// across restarts. Each line is parsed with the shared parsers (CSV,
// key=value, regex, JSON lines, raw) and the records of many lines are
// gathered into one bus batch.
package line

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/parse"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "line",
		Roles:   connectors.RoleSource,
		New:     func() connectors.Connector { return &Line{} },
		Sample:  sample,
		Summary: "legacy line feeds (CSV, key=value, regex, JSON lines) over a TCP listener or client, a serial port, or a tailed file",
	})
}

// Line is the line source. One instance reads one transport.
type Line struct {
	Config `yaml:",inline"`

	env       *connectors.Env
	parseErrs prometheus.Counter
	// lostBytes counts bytes a copytruncate cut off before they were read
	// (written between logrotate's copy and its truncate, and seen).
	lostBytes prometheus.Counter
	clients   prometheus.Gauge
	// closedTotal counts listener clients closed or refused, by reason.
	closedTotal *prometheus.CounterVec
	limits      map[string]*connectors.Burst // one log window per reason; guarded by mu

	ctx    context.Context // ends at Stop, before the Env's
	cancel context.CancelFunc
	in     *parse.Batcher // stream transports

	mu        sync.Mutex
	ln        net.Listener
	conns     map[net.Conn]*client // open connections; nil values for the TCP client transport
	listening chan struct{}        // closed once ln is bound (tests)

	slots chan struct{} // a token per listener client, max_clients of them
	// readers counts the goroutines reading a stream; Stop waits for them
	// to hand their last lines to the batcher before its final flush.
	readers  int
	stopping bool
	drained  chan struct{} // closed when readers reaches 0 after Stop began
}

// ErrLineTooLong marks a line longer than max_line; it is skipped up to its
// newline and counted as a parse error.
var ErrLineTooLong = errors.New("line too long")

// Outputs implements connectors.Source.
func (l *Line) Outputs() []string { return []string{connectors.DefaultOutput} }

// Start opens the listener (a port that cannot be bound fails the start)
// or starts the connecting, serial or tailing loop, which retries on its
// own.
func (l *Line) Start(_ context.Context, env *connectors.Env) error {
	l.env = env
	l.ctx, l.cancel = context.WithCancel(env.Context())
	l.parseErrs = connectors.Collector(env.Metrics.Reg, parse.ErrorsMetric()).WithLabelValues(env.Name)
	l.lostBytes = connectors.Collector(env.Metrics.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_line_truncation_lost_bytes_total",
		Help: "Bytes of a tailed file that a copytruncate cut off before they were read and that its copy does not hold.",
	}, []string{"module"})).WithLabelValues(env.Name)
	l.clients = connectors.Collector(env.Metrics.Reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_line_clients", Help: "Clients connected to a line source's TCP listener.",
	}, []string{"module"})).WithLabelValues(env.Name)
	l.closedTotal = connectors.Collector(env.Metrics.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_line_clients_closed_total",
		Help: "Listener clients the line source closed or refused: idle_timeout, evicted (for a newcomer, with max_clients connected), refused.",
	}, []string{"module", "reason"}))
	if _, err := parse.New(l.Parse); err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	if l.File != "" {
		t, err := newTail(l, env.Path(l.File))
		if err != nil {
			return err
		}
		env.Connecting()
		env.Go("tail", t.run)
		return nil
	}
	l.in = parse.NewBatcher(env, l.BatchSize)
	env.Go("flush", func(context.Context) error { return l.in.Run(l.ctx, l.BatchInterval.D()) })
	switch {
	case l.Listen != "":
		return l.listen()
	case l.Connect != "":
		env.Connecting()
		env.Go("connect", l.connect)
	case l.Serial != nil:
		env.Connecting()
		env.Go("serial", l.serial)
	}
	return nil
}

// Stop closes the listener and every connection, then emits what was
// received but not yet flushed. A tailed file commits its offset only after
// a batch was emitted, so stopping it loses nothing.
func (l *Line) Stop(ctx context.Context) error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	l.mu.Lock()
	l.stopping = true
	if l.ln != nil {
		_ = l.ln.Close()
	}
	for c := range l.conns {
		_ = c.Close()
	}
	drained := make(chan struct{})
	if l.readers == 0 {
		close(drained)
	} else {
		l.drained = drained
	}
	l.mu.Unlock()
	select {
	case <-drained:
	case <-ctx.Done():
		return fmt.Errorf("line: readers still running: %w", ctx.Err())
	}
	if l.in != nil {
		// Close waits for the readers' last lines to be emitted, and makes
		// the flush itself when the flush goroutine is between restarts.
		if err := l.in.Close(ctx); err != nil {
			return fmt.Errorf("line: %w", err)
		}
	}
	return nil
}

// track adds or removes a connection that Stop must close; cl is the
// listener's client, nil for the TCP client transport.
func (l *Line) track(c net.Conn, cl *client, add bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		l.conns = map[net.Conn]*client{}
	}
	if add {
		l.conns[c] = cl
	} else {
		delete(l.conns, c)
	}
}

// enter registers a goroutine that reads a stream; false once Stop has
// begun.
func (l *Line) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return false
	}
	l.readers++
	return true
}

// leave is called when a stream's lines were all handed on.
func (l *Line) leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.readers--
	if l.readers == 0 && l.drained != nil {
		close(l.drained)
		l.drained = nil
	}
}

// limitLog returns the log window of a reason.
func (l *Line) limitLog(reason string) *connectors.Burst {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limits == nil {
		l.limits = map[string]*connectors.Burst{}
	}
	b := l.limits[reason]
	if b == nil {
		b = &connectors.Burst{Quiet: 10 * time.Second}
		l.limits[reason] = b
	}
	return b
}

// bound is closed once the listener is bound.
func (l *Line) bound() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.listening == nil {
		l.listening = make(chan struct{})
	}
	return l.listening
}

// Addr is the listener's bound address (nil before Start or for other
// transports); with listen: host:0 it tells which port was picked.
func (l *Line) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln == nil {
		return nil
	}
	return l.ln.Addr()
}

// parseError counts a line that did not fit and reports it once per burst.
func (l *Line) parseError(origin string, err error) {
	l.parseErrs.Inc()
	l.env.Error(fmt.Errorf("%s: %w", origin, err))
}

// parseLine appends the records of one line to b, with the default device.
func (l *Line) parseLine(p *parse.Parser, line []byte, origin string, b *bus.Batch) {
	n := len(b.Records)
	if err := p.ParseLine(line, origin, b); err != nil {
		l.parseError(origin, err)
		return
	}
	if l.Device == "" {
		return
	}
	for i := n; i < len(b.Records); i++ {
		if b.Records[i].Device == "" {
			b.Records[i].Device = l.Device
		}
	}
}

var _ connectors.Source = (*Line)(nil)
