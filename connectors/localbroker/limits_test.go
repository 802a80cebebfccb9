package localbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/connectors"

	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

func (b *Broker) refusedCount(reason string) float64 {
	return testutil.ToFloat64(b.limits.refused.WithLabelValues(b.env.Name, reason))
}

func waitRefused(t *testing.T, b *Broker, reason string, n float64) {
	t.Helper()
	waitfor.Until(t, 10*time.Second, func() bool { return b.refusedCount(reason) == n },
		func() string {
			return fmt.Sprintf("%v %s refusals counted, want %v", b.refusedCount(reason), reason, n)
		})
}

// goodClient connects as dashboard, as a well-behaved client does.
func goodClient(t *testing.T, b *Broker) {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr("tcp")).SetClientID("good").
		SetUsername("dashboard").SetPassword("dash").SetAutoReconnect(false).SetConnectRetry(false))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("a good client could not connect: %v", tok.Error())
	}
	cl.Disconnect(0)
}

// waitClosed reads c until the broker closes it.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatal("the broker did not close the socket within 10s")
		case err != nil:
			return
		}
	}
}

func dial(t *testing.T, b *Broker) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", b.Addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestHugeConnectHeaderNotAllocated: a five-byte CONNECT header claiming
// 268 MB is refused from its header, before anything is allocated for it.
func TestHugeConnectHeaderNotAllocated(t *testing.T) {
	b, _, _ := start(t, nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 20
	for range n {
		c := dial(t, b)
		if _, err := c.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
	}
	waitRefused(t, b, refusedPacketTooLarge, n)
	runtime.ReadMemStats(&after) // no GC: what was allocated is still counted
	// Each would have been 268 MB; allow the sockets and some noise.
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d five-byte CONNECT headers claiming 268 MB each: %d KiB allocated in all", n, grew>>10)
	if grew > 64<<20 {
		t.Errorf("%d connections allocated %d MiB", n, grew>>20)
	}
	goodClient(t, b)
}

// TestIdleUnauthenticatedClosed: sockets that send no CONNECT are closed
// after connect_timeout, and counted.
func TestIdleUnauthenticatedClosed(t *testing.T) {
	b, _, _ := start(t, func(c *Config) { c.ConnectTimeout = conf.Duration(200 * time.Millisecond) })
	const n = 5
	var idle []net.Conn
	for range n {
		idle = append(idle, dial(t, b))
	}
	for _, c := range idle {
		waitClosed(t, c)
	}
	waitRefused(t, b, refusedConnectTimeout, n)
	goodClient(t, b)
	if got := b.refusedCount(refusedConnectTimeout); got != n {
		t.Errorf("%v connect timeouts after a good client connected, want %d", got, n)
	}
}

// TestIdleSocketsDoNotLockOut: with max_clients sockets open that never
// send CONNECT, a good client still gets in (the oldest idle socket makes
// room); with max_clients authenticated clients, one more is refused.
func TestIdleSocketsDoNotLockOut(t *testing.T) {
	const max = 3
	b, _, _ := start(t, func(c *Config) { c.MaxClients = max })
	var idle []net.Conn
	for range max {
		idle = append(idle, dial(t, b))
	}
	waitfor.Until(t, 10*time.Second, func() bool { return b.openSockets() == max },
		func() string { return fmt.Sprintf("%d sockets open, want %d", b.openSockets(), max) })
	goodClient(t, b)
	waitClosed(t, idle[0]) // the oldest
	waitRefused(t, b, refusedEvicted, 1)
}

// TestRetainedLimit: beyond max_retained, messages are delivered but not
// retained, and counted.
func TestRetainedLimit(t *testing.T) {
	b, _, _ := start(t, func(c *Config) { c.MaxRetained = 2 })
	if err := b.Write(t.Context(), records(3)); err != nil {
		t.Fatal(err)
	}
	waitRefused(t, b, refusedRetained, 1)
	var kept []string
	for topic := range b.srv.Topics.Retained.GetAll() {
		if !strings.HasPrefix(topic, "$SYS") { // mochi's own
			kept = append(kept, topic)
		}
	}
	if len(kept) != 2 {
		t.Errorf("retained %v, want 2 topics", kept)
	}
}

func (b *Broker) openSockets() int {
	b.limits.mu.Lock()
	defer b.limits.mu.Unlock()
	return len(b.limits.conns)
}

// logRecorder keeps the records a logger handles.
type logRecorder struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// TestClosedConnectionsLogNoEmptyWarn: clients that come and go, and
// scanners that connect and leave, log no WARN with an empty message;
// refusals are logged once per window.
func TestClosedConnectionsLogNoEmptyWarn(t *testing.T) {
	rec := &logRecorder{}
	b := &Broker{Config: Config{Listeners: Listeners{TCP: "127.0.0.1:0"}, AllowAnonymous: true}}
	b.SetDefaults()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "local", Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Stop(ctx)
		_ = env.Shutdown(ctx)
	})
	for i := range 5 {
		cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr("tcp")).SetClientID(fmt.Sprint("c", i)))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		cl.Disconnect(0)
		_ = dial(t, b).Close() // a scanner
	}
	waitRefused(t, b, refusedProtocol, 5)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	refusals := 0
	for _, r := range rec.recs {
		if r.Level >= slog.LevelWarn && r.Message == "" {
			t.Errorf("WARN with an empty message: %v", r)
		}
		if r.Message == "broker refused a connection" {
			refusals++
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusal lines for 5 scanners in one window, want 1", refusals)
	}
}
