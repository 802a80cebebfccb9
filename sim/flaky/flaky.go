// Package flaky is a TCP proxy on loopback that makes a link misbehave the
// way plant WANs and satellite links do: cut, blackhole (accepted but never
// answered), added latency, a bandwidth limit, and a reset after N bytes.
// Tests drive it from code; the demo drives it by a schedule.
package flaky

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is the link's state.
type Mode int32

const (
	Up        Mode = iota // forward everything
	Cut                   // reset every connection, refuse new ones
	Blackhole             // accept and hold connections, forward nothing
)

func (m Mode) String() string {
	switch m {
	case Up:
		return "up"
	case Cut:
		return "cut"
	case Blackhole:
		return "blackhole"
	}
	return fmt.Sprintf("Mode(%d)", int32(m))
}

// Config says where to listen and what to forward to.
type Config struct {
	Listen string // default 127.0.0.1:0
	Target string // host:port
	Logger *slog.Logger
}

// Stats counts what crossed the proxy.
type Stats struct {
	Accepted  int64 // connections accepted
	Refused   int64 // connections reset because the link was cut
	Resets    int64 // connections reset by ResetAfter
	BytesUp   int64 // client → target
	BytesDown int64 // target → client
}

// Proxy is a running flaky link.
type Proxy struct {
	cfg    Config
	ln     net.Listener
	logger *slog.Logger

	mode       atomic.Int32
	latency    atomic.Int64 // ns added before each forwarded chunk
	bandwidth  atomic.Int64 // bytes/s per direction, over all connections; 0 = unlimited
	upBucket   bucket       // client → target
	downBucket bucket       // target → client
	resetAfter atomic.Int64 // bytes per connection before a reset; 0 = never

	accepted, refused, resets, up, down atomic.Int64

	mu      sync.Mutex
	conns   map[*link]struct{}
	changed chan struct{} // closed and replaced on every mode change
	wg      sync.WaitGroup
	closed  chan struct{}
	once    sync.Once
}

type link struct {
	client, server net.Conn
	bytes          atomic.Int64
}

// Start listens and forwards to cfg.Target until Close or ctx ends.
func Start(ctx context.Context, cfg Config) (*Proxy, error) {
	if cfg.Target == "" {
		return nil, errors.New("flaky: no target address")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("flaky: listen %s: %w", cfg.Listen, err)
	}
	p := &Proxy{cfg: cfg, ln: ln, logger: cfg.Logger.With("component", "flaky"),
		conns: map[*link]struct{}{}, changed: make(chan struct{}), closed: make(chan struct{})}
	p.logger.Info("flaky link listening", "addr", ln.Addr().String(), "target", cfg.Target)
	p.wg.Add(1)
	go p.accept()
	go func() {
		select {
		case <-ctx.Done():
			p.Close()
		case <-p.closed:
		}
	}()
	return p, nil
}

// Addr is the address clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Mode returns the link's state.
func (p *Proxy) Mode() Mode { return Mode(p.mode.Load()) }

// SetMode changes the link's state. Cut resets every open connection;
// Blackhole freezes them (they resume when the link comes back Up, as TCP
// does after a routing outage).
func (p *Proxy) SetMode(m Mode) {
	old := Mode(p.mode.Swap(int32(m)))
	if old == m {
		return
	}
	p.logger.Info("link mode", "from", old.String(), "to", m.String())
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	var cut []*link
	if m == Cut {
		for l := range p.conns {
			cut = append(cut, l)
		}
	}
	p.mu.Unlock()
	for _, l := range cut {
		l.reset()
	}
}

// SetLatency adds d before every forwarded chunk, in both directions.
func (p *Proxy) SetLatency(d time.Duration) { p.latency.Store(int64(d)) }

// SetBandwidth limits each direction of the link to bytesPerSec, shared by
// all its connections as a WAN link's capacity is (0 removes the limit).
// It is a token bucket holding BandwidthBurst of traffic: an idle link
// lets that much through at once, and over any longer span the rate holds.
func (p *Proxy) SetBandwidth(bytesPerSec int64) { p.bandwidth.Store(bytesPerSec) }

// BandwidthBurst is how much traffic, in time at the set rate, the
// bandwidth limit lets through at once after a pause.
const BandwidthBurst = 20 * time.Millisecond

// bandwidthChunk is the most bytes forwarded in one write under a
// bandwidth limit: a large read goes out in paced pieces, as it would
// leave a slow link, not in one late burst.
const bandwidthChunk = 4 << 10

// bucket is a token bucket in its virtual-time form: next is when the
// bytes granted so far will have drained at the rate. A sleeper that wakes
// late does not lose capacity (next does not move with the wake-up), and
// an idle link earns at most BandwidthBurst of credit.
type bucket struct {
	mu   sync.Mutex
	next time.Time
}

// take grants n bytes at rate bytes/s at now and returns how long the
// caller must wait before sending them (≤ 0: at once).
func (b *bucket) take(now time.Time, n int, rate int64) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if floor := now.Add(-BandwidthBurst); b.next.Before(floor) {
		b.next = floor
	}
	b.next = b.next.Add(time.Duration(float64(n) / float64(rate) * float64(time.Second)))
	return b.next.Sub(now)
}

// ResetAfter resets each connection once n bytes crossed it (0: never).
func (p *Proxy) ResetAfter(n int64) { p.resetAfter.Store(n) }

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Refused: p.refused.Load(), Resets: p.resets.Load(),
		BytesUp: p.up.Load(), BytesDown: p.down.Load()}
}

// Step is one entry of a schedule: after Wait, switch to Mode.
type Step struct {
	Wait time.Duration
	Mode Mode
}

// RunSchedule applies steps in order, then starts over when loop is set,
// until ctx ends. The demo uses it to cut its uplink every so often.
func (p *Proxy) RunSchedule(ctx context.Context, steps []Step, loop bool) {
	if len(steps) == 0 {
		return
	}
	for {
		for _, s := range steps {
			t := time.NewTimer(s.Wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-p.closed:
				t.Stop()
				return
			case <-t.C:
			}
			p.SetMode(s.Mode)
		}
		if !loop {
			return
		}
	}
}

// Close stops listening and resets every connection.
func (p *Proxy) Close() error {
	var err error
	p.once.Do(func() {
		close(p.closed)
		err = p.ln.Close()
		p.mu.Lock()
		for l := range p.conns {
			l.reset()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if p.Mode() == Cut {
			p.refused.Add(1)
			resetConn(c)
			continue
		}
		p.accepted.Add(1)
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.cfg.Target, 5*time.Second)
	if err != nil {
		p.logger.Warn("target unreachable", "target", p.cfg.Target, "error", err)
		resetConn(client)
		return
	}
	l := &link{client: client, server: server}
	p.mu.Lock()
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.pump(l, server, client, &p.up, &p.upBucket) }()
	go func() { defer wg.Done(); p.pump(l, client, server, &p.down, &p.downBucket) }()
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// pump copies src → dst a chunk at a time, applying the link's faults.
func (p *Proxy) pump(l *link, dst, src net.Conn, counter *atomic.Int64, bw *bucket) {
	defer l.reset()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if d := p.latency.Load(); d > 0 {
				time.Sleep(time.Duration(d))
			}
			if limit := p.resetAfter.Load(); limit > 0 && l.bytes.Add(int64(n)) > limit {
				p.resets.Add(1)
				return
			}
			for out := buf[:n]; len(out) > 0; {
				piece := out
				if rate := p.bandwidth.Load(); rate > 0 {
					piece = out[:min(len(out), bandwidthChunk)]
					if d := bw.take(time.Now(), len(piece), rate); d > 0 {
						time.Sleep(d)
					}
				}
				out = out[len(piece):]
				// Counted before the write: the peer may answer (and a
				// test look at the stats) before Write returns here.
				counter.Add(int64(len(piece)))
				if _, werr := dst.Write(piece); werr != nil {
					return
				}
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			// Half-close: pass the EOF on and let the other direction finish.
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// gate waits while the link is blackholed and reports whether forwarding
// may go on (false: the link was cut or the proxy closed).
func (p *Proxy) gate() bool {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		switch p.Mode() {
		case Up:
			return true
		case Cut:
			return false
		}
		select {
		case <-ch:
		case <-p.closed:
			return false
		}
	}
}

func (l *link) reset() {
	resetConn(l.client)
	resetConn(l.server)
}

// resetConn closes with SO_LINGER 0, so the peer sees a reset as on a real
// cut, not an orderly close.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
