package mqtt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// countingBroker is a mochi broker on loopback that counts the CONNECT
// packets it receives per user name (clients sharing one client id are told
// apart by it).
type countingBroker struct {
	mochi.HookBase
	addr string
	srv  *mochi.Server

	mu       sync.Mutex
	connects map[string]int
	recvMax  map[string]uint16 // the Receive Maximum of each user's last CONNECT
}

func startCountingBroker(t *testing.T) *countingBroker {
	t.Helper()
	b := &countingBroker{connects: map[string]int{}, recvMax: map[string]uint16{}}
	srv := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: true})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddHook(b, nil); err != nil {
		t.Fatal(err)
	}
	tcp := listeners.NewTCP(listeners.Config{ID: "count", Address: "127.0.0.1:0"})
	if err := srv.AddListener(tcp); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b.addr, b.srv = tcp.Address(), srv
	return b
}

func (b *countingBroker) ID() string { return "count-connects" }

func (b *countingBroker) Provides(h byte) bool { return h == mochi.OnConnect }

func (b *countingBroker) OnConnect(_ *mochi.Client, pk packets.Packet) error {
	b.mu.Lock()
	b.connects[string(pk.Connect.Username)]++
	b.recvMax[string(pk.Connect.Username)] = pk.Properties.ReceiveMaximum
	b.mu.Unlock()
	return nil
}

func (b *countingBroker) count(user string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.connects[user]
}

func testTakeovers(env *connectors.Env) float64 {
	return testutil.ToFloat64(connectors.Collector(env.Metrics.Reg, TakeoversMetric()).WithLabelValues(env.Name))
}

// TestSessionTakeover runs the uplink against a real broker with a rival
// client that uses the same client id and reconnects soon after it loses
// the session (as a second ferry with the old loop did: ~16,000 connections
// in 12 s, issue 12). Each takes the session from the other; the uplink must
// back off, so the broker sees a handful of its connections, not hundreds;
// the takeover is counted and is what the state says. An MQTT 5 broker says
// so (DISCONNECT 0x8E); under 3.1.1 it is inferred from repeated quick drops.
func TestSessionTakeover(t *testing.T) {
	const (
		id     = "ferry-dup"
		window = 3 * time.Second
		// The takeover back-off below allows two or three connections per
		// window; without back-off the two clients fight flat out (about
		// sixty here, paced by the rival's pause). A slow machine only makes
		// fewer.
		maxInWindow = 10
	)
	for _, tc := range []struct{ broker, v string }{{"mochi", "5"}, {"mochi", "3.1.1"}, {"mosquitto", "5"}, {"mosquitto", "3.1.1"}} {
		v := tc.v
		t.Run(tc.broker+"/v"+v, func(t *testing.T) {
			b := startBroker(t, tc.broker)
			m := newSink(t, "tcp://"+b.uplinkAddr, v, func(c *Config) {
				c.ClientID = id
				c.Username = "ferry" // how the broker's count tells it from the rival
				c.ReconnectMax = conf.Duration(time.Second)
			})
			// Shortened so the test sees the fight in seconds; no
			// connection lives long enough to reset the back-off.
			m.timing = linkTiming{stableAfter: 5 * time.Second, quickDrop: 3 * time.Second, quickDrops: 3,
				takeoverMin: time.Second, takeoverMax: 2 * time.Second}
			env := startSink(t, m)
			waitPhase(t, env, connectors.PhaseUp)
			rival(t, b.addr, id)

			want := `session taken over by another client with the same client id "` + id + `"`
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			if err := pollUntil(ctx, func() bool {
				s := env.State().Snapshot()
				return s.Phase == connectors.PhaseDown && strings.Contains(s.LastError, want) && testTakeovers(env) > 0
			}); err != nil {
				s := env.State().Snapshot()
				t.Fatalf("uplink %s, takeovers %v, last error %q; want down saying %q (%d connections)",
					s.Phase, testTakeovers(env), s.LastError, want, b.uplinkConnects())
			}

			before, took := b.uplinkConnects(), testTakeovers(env)
			time.Sleep(window) // counting what happens in a window: nothing to wait on
			during := b.uplinkConnects() - before
			t.Logf("uplink: %d connections until the takeover was reported (%q), %d in the next %v",
				before, env.State().Snapshot().LastError, during, window)
			if during > maxInWindow {
				t.Errorf("uplink connected %d times in %v with a duplicate client id; want at most %d (the reconnect is not backed off)", during, window, maxInWindow)
			}
			if during == 0 {
				t.Errorf("uplink never reconnected in %v", window)
			}
			if after := testTakeovers(env); after <= took {
				t.Errorf("takeover metric stayed at %v while the rival kept taking the session", after)
			}
			if s := env.State().Snapshot(); !strings.Contains(s.LastError, want) {
				t.Errorf("last error %q; want it to say %q", s.LastError, want)
			}
		})
	}
}

// rival connects as id (MQTT 3.1.1, user "rival") and connects again
// shortly after it loses the session, until the test ends. The pause keeps
// clear of a mochi race: when two CONNECTs with one id are attached at the
// same moment, it can keep both open and forget the older one (seen here:
// the uplink's writes acknowledged while the rival kept reconnecting).
func rival(t *testing.T, addr, id string) {
	t.Helper()
	const pause = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			lost := make(chan struct{})
			cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername("rival").
				SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(2 * time.Second).
				SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
			if tok := cl.Connect(); tok.WaitTimeout(3*time.Second) && tok.Error() == nil {
				select {
				case <-lost:
				case <-ctx.Done():
					cl.Disconnect(0)
					return
				}
			}
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
		}
	}()
}

// testBroker is a real broker for the takeover test: the uplink's
// connections are counted on the broker's side (a mochi hook), or, for
// mosquitto, by a proxy in front of it that only the uplink uses.
type testBroker struct {
	addr, uplinkAddr string
	uplinkConnects   func() int
}

func startBroker(t *testing.T, kind string) testBroker {
	t.Helper()
	if kind == "mochi" {
		b := startCountingBroker(t)
		return testBroker{addr: b.addr, uplinkAddr: b.addr,
			uplinkConnects: func() int { return b.count("ferry") }}
	}
	addr := testbroker.Mosquitto(t)
	p, err := flaky.Start(t.Context(), flaky.Config{Target: addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return testBroker{addr: addr, uplinkAddr: p.Addr(),
		uplinkConnects: func() int { return int(p.Stats().Accepted) }}
}

// pollUntil calls cond every few milliseconds until it holds or ctx ends.
func pollUntil(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// endedConn is a connection that has ended for a given cause.
type endedConn struct{ why error }

func (endedConn) send(string, []byte, props) (func(context.Context) error, error) {
	return nil, errors.New("ended")
}
func (endedConn) subscribe(context.Context, string, byte) error { return errors.New("ended") }
func (endedConn) done() <-chan struct{}                         { return nil }
func (c endedConn) cause() error                                { return c.why }
func (endedConn) close()                                        {}

// TestEndedClassifies checks how a lost connection is judged: only the
// broker's 0x8E or a streak of quick drops the broker caused is a takeover.
func TestEndedClassifies(t *testing.T) {
	m := &MQTT{Config: Config{URL: "tcp://b:1883", ClientID: "c1"}}
	m.SetDefaults()
	m.timing.setDefaults(m.ReconnectMax.D())
	fast, slow := time.Second, 6*time.Second
	for _, tc := range []struct {
		name     string
		ends     []endedConn
		lived    []time.Duration
		takeover []bool
	}{
		{"mqtt 5 takeover counts at once, however long the connection lived",
			[]endedConn{{&disconnectError{code: reasonSessionTakenOver}}}, []time.Duration{slow}, []bool{true}},
		{"another DISCONNECT reason is not a takeover",
			[]endedConn{{&disconnectError{code: 0x89}}, {&disconnectError{code: 0x89}}, {&disconnectError{code: 0x89}}},
			[]time.Duration{fast, fast, fast}, []bool{false, false, false}},
		{"three quick drops in a row",
			[]endedConn{{}, {}, {}, {}}, []time.Duration{fast, fast, fast, fast}, []bool{false, false, true, true}},
		{"a connection that lived long ends the streak",
			[]endedConn{{}, {}, {}, {}, {}}, []time.Duration{fast, fast, slow, fast, fast}, []bool{false, false, false, false, false}},
		{"connections ferry closed itself (no PUBACK) are not the broker's doing",
			[]endedConn{{}, {}, {errClosedHere}, {}, {}}, []time.Duration{fast, fast, fast, fast, fast}, []bool{false, false, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var quick int
			for i, c := range tc.ends {
				takeover, err := m.ended(c, tc.lived[i], &quick)
				if takeover != tc.takeover[i] {
					t.Fatalf("connection %d: takeover %v, want %v (%v)", i, takeover, tc.takeover[i], err)
				}
				if says := strings.Contains(err.Error(), `session taken over by another client with the same client id "c1"`); says != takeover {
					t.Fatalf("connection %d: error %q", i, err)
				}
			}
		})
	}
}

// A reset or a timeout is the network's doing, a plain close the broker's:
// only the latter can be a takeover.
func TestBrokenLinkIsNotATakeover(t *testing.T) {
	for _, tc := range []struct {
		err    error
		broken bool
	}{
		{nil, false},
		{io.EOF, false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), false},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, true},
		{&net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}, true},
		{fmt.Errorf("keepalive: %w", os.ErrDeadlineExceeded), true},
	} {
		var e ending
		e.recordBroken(tc.err)
		if got := e.get() != nil; got != tc.broken {
			t.Errorf("%v: recorded %v, want %v", tc.err, got, tc.broken)
		}
	}
}
