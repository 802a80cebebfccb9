package line

import (
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/internal/waitfor"
)

func (l *Line) closedCount(reason string) float64 {
	return testutil.ToFloat64(l.closedTotal.WithLabelValues(l.env.Name, reason))
}

func (l *Line) listenerClients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, cl := range l.conns {
		if cl != nil {
			n++
		}
	}
	return n
}

// waitClosedByPeer reads c until the listener closes it.
func waitClosedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the listener did not close the client within 10s")
	}
}

// TestListenerClosesIdleClients: a client silent for idle_timeout is
// closed and counted; what it sent before is kept.
func TestListenerClosesIdleClients(t *testing.T) {
	l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\nidle_timeout: 200ms\n"+streamParse)
	col := newCollector()
	start(t, l, "idle", t.TempDir(), col)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, goodLine+"\n"); err != nil {
		t.Fatal(err)
	}
	waitClosedByPeer(t, c)
	col.wait(t, 1, 10*time.Second)
	waitfor.Until(t, 10*time.Second, func() bool { return l.closedCount(reasonIdle) == 1 },
		func() string { return fmt.Sprintf("idle closes counted: %v, want 1", l.closedCount(reasonIdle)) })
}

// TestListenerGoodClientGetsPastIdleSockets: with max_clients idle sockets
// open (and an idle_timeout far away), a good client still gets in: it
// takes the place of the socket silent the longest.
func TestListenerGoodClientGetsPastIdleSockets(t *testing.T) {
	const max = 100
	l := mustDecode(t, fmt.Sprintf("type: line\nlisten: 127.0.0.1:0\nmax_clients: %d\nidle_timeout: 1h\nevict_idle: 100ms\n%s", max, streamParse))
	col := newCollector()
	start(t, l, "evict", t.TempDir(), col)
	var idle []net.Conn
	for range max {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	waitfor.Until(t, 10*time.Second, func() bool { return l.listenerClients() == max },
		func() string { return fmt.Sprintf("%d idle clients accepted, want %d", l.listenerClients(), max) })
	// Until the idle sockets have been silent for evict_idle, a newcomer
	// is refused; after that it must get in.
	waitfor.Until(t, 10*time.Second, func() bool { return l.longestIdle(l.EvictIdle.D()) != nil },
		waitfor.Say("the idle clients never counted as silent"))
	began := time.Now()
	good, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	for i := range 5 {
		if _, err := fmt.Fprintf(good, "temp=%d\n", i); err != nil {
			t.Fatal(err)
		}
	}
	col.wait(t, 5, 10*time.Second)
	t.Logf("with %d idle sockets open, a good client's lines arrived %v after it connected", max, time.Since(began).Round(time.Millisecond))
	if n := l.closedCount(reasonEvicted); n != 1 {
		t.Errorf("%v evictions counted, want 1", n)
	}
	if n := l.closedCount(reasonRefused); n != 0 {
		t.Errorf("%v refusals counted, want 0", n)
	}
	closed := 0
	for _, c := range idle {
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			closed++
		}
	}
	if closed != 1 {
		t.Errorf("%d idle sockets closed, want 1 (the one silent longest)", closed)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
