package opcua

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proxy owns the public address and forwards each connection to the
// running gopcua server on its internal port. gopcua's server cannot close
// its client connections (Close sends a CloseSecureChannel request and then
// waits ten seconds for the client to hang up), so without the proxy a
// restart would leave clients talking to a dead server over open sockets.
// It also lets a test drop every connection at once.
type proxy struct {
	mu     sync.Mutex
	s      *Server
	ln     net.Listener
	addr   string
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	total  uint64
	closed bool
	// malform, when set, garbles the body of the next message the server
	// sends (after the 24-byte header, so the client still matches it to
	// its request and fails decoding it).
	malform atomic.Bool
}

// copyDown copies server → client, garbling one message when asked.
func (p *proxy) copyDown(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if n > 32 && string(buf[:3]) == "MSG" && p.malform.CompareAndSwap(true, false) {
				for i := 24; i < n; i++ {
					buf[i] = 0xff
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// listen binds the public address (the configured one the first time, the
// same host:port afterwards), retrying while the port is busy unless first.
func (p *proxy) listen(ctx context.Context, s *Server, first bool) error {
	p.mu.Lock()
	p.s = s
	addr := p.addr
	if addr == "" {
		addr = s.cfg.Addr
	}
	p.mu.Unlock()
	var lc net.ListenConfig
	for {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			p.mu.Lock()
			p.ln, p.addr, p.closed = ln, ln.Addr().String(), false
			if p.conns == nil {
				p.conns = map[net.Conn]struct{}{}
			}
			p.wg.Add(1)
			p.mu.Unlock()
			go p.accept(ln)
			return nil
		}
		if first || !errors.Is(err, syscall.EADDRINUSE) || ctx.Err() != nil {
			return fmt.Errorf("opcua sim: listen on %s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("opcua sim: listen on %s again: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (p *proxy) address() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(c)
	}
}

func (p *proxy) serve(c net.Conn) {
	defer p.wg.Done()
	g := p.s.cur.Load()
	if g == nil {
		_ = c.Close()
		return
	}
	up, err := net.DialTimeout("tcp", g.internal[len("opc.tcp://"):], 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		_ = c.Close()
		_ = up.Close()
		return
	}
	p.conns[c] = struct{}{}
	p.conns[up] = struct{}{}
	p.total++
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.Close()
		close(done)
	}()
	p.copyDown(c, up)
	_ = c.Close()
	_ = up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// dropConnections closes every proxied connection; the listener stays.
func (p *proxy) dropConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

// stop closes the listener and every connection and waits for the
// forwarding goroutines.
func (p *proxy) stop() {
	p.mu.Lock()
	p.closed = true
	if p.ln != nil {
		_ = p.ln.Close()
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) connections() (open int, total uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2, p.total
}
