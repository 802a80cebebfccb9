package localbroker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/connectors"
)

// Reasons the broker refuses a connection or a message, the reason label
// of ferry_localbroker_refused_total.
const (
	refusedMaxClients     = "max_clients"      // a socket refused: max_clients are open, all past CONNECT
	refusedEvicted        = "evicted"          // a socket not past CONNECT closed for a newcomer
	refusedConnectTimeout = "connect_timeout"  // no CONNECT (or no TLS handshake) within connect_timeout
	refusedPacketTooLarge = "packet_too_large" // a packet over max_packet_size, refused from its header
	refusedNotAuthorized  = "not_authorized"   // a CONNECT with a wrong user or password
	refusedProtocol       = "protocol"         // anything else wrong before CONNECT was accepted
	refusedRetained       = "retained_limit"   // a message delivered but not retained: max_retained(_bytes)
)

var refusalReasons = []string{refusedMaxClients, refusedEvicted, refusedConnectTimeout, refusedPacketTooLarge,
	refusedNotAuthorized, refusedProtocol, refusedRetained}

// limits enforces what mochi leaves unbounded (LIBRARY-NOTES): the open
// sockets, the time a socket may take to send CONNECT, and the retained
// messages; it counts and logs every refusal. One limits serves every
// listener of a broker.
type limits struct {
	b       *Broker
	refused *prometheus.CounterVec
	logs    map[string]*connectors.Burst

	mu    sync.Mutex
	conns map[net.Conn]*sock // every open socket of every listener
	// retained payload sizes by topic, as admitted here (mochi's own
	// store is not observable cheaply)
	retained      map[string]int
	retainedBytes int
}

// sock is one open socket.
type sock struct {
	c        net.Conn
	accepted time.Time
	authed   bool // past CONNECT and authentication
	evicted  bool
}

func newLimits(b *Broker, env *connectors.Env) *limits {
	l := &limits{b: b, logs: map[string]*connectors.Burst{}, conns: map[net.Conn]*sock{}, retained: map[string]int{}}
	l.refused = connectors.Collector(env.Metrics.Reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_localbroker_refused_total",
		Help: "Connections and messages the embedded broker refused, by reason: max_clients, evicted, connect_timeout, packet_too_large, not_authorized, protocol, retained_limit.",
	}, []string{"module", "reason"}))
	for _, r := range refusalReasons {
		l.refused.WithLabelValues(env.Name, r) // every series from the start, at 0
		l.logs[r] = &connectors.Burst{Quiet: 10 * time.Second}
	}
	return l
}

// refuse counts a refusal and logs it once per window and reason.
func (l *limits) refuse(reason string, attrs ...slog.Attr) {
	l.refused.WithLabelValues(l.b.env.Name, reason).Inc()
	l.logs[reason].Log(l.b.env.Logger, slog.LevelWarn, "broker refused "+subject(reason), append(attrs, slog.String("reason", reason))...)
}

func subject(reason string) string {
	if reason == refusedRetained {
		return "to retain a message"
	}
	return "a connection"
}

// guard wraps one of mochi's listeners: every socket it accepts passes
// through establish.
type guard struct {
	listeners.Listener
	l *limits
}

// Serve hands mochi an establish that applies the limits and reports the
// outcome itself: mochi's own listeners log a WARN with an empty message
// for every connection that ends with an error.
func (g *guard) Serve(establish listeners.EstablishFn) {
	g.Listener.Serve(func(id string, c net.Conn) error {
		g.l.establish(establish, id, c)
		return nil
	})
}

func (l *limits) establish(establish listeners.EstablishFn, id string, c net.Conn) {
	remote := slog.String("remote", c.RemoteAddr().String())
	s, ok := l.admit(c)
	if !ok {
		l.refuse(refusedMaxClients, remote, slog.Int("max_clients", l.b.MaxClients))
		_ = c.Close()
		return
	}
	defer l.release(c)
	// Until CONNECT is in, the socket has connect_timeout; mochi then sets
	// the deadline from the client's keep-alive.
	_ = c.SetDeadline(time.Now().Add(l.b.ConnectTimeout.D()))
	err := establish(id, c)
	l.mu.Lock()
	authed, evicted := s.authed, s.evicted
	l.mu.Unlock()
	reason := ""
	switch {
	case err == nil, evicted:
	case errors.Is(err, packets.ErrPacketTooLarge):
		reason = refusedPacketTooLarge
	case authed:
		// A session that ended: a client gone, a keep-alive missed.
	case errors.Is(err, os.ErrDeadlineExceeded):
		reason = refusedConnectTimeout
	case errors.Is(err, packets.ErrBadUsernameOrPassword), errors.Is(err, packets.ErrNotAuthorized):
		reason = refusedNotAuthorized
	case errors.Is(err, packets.ErrServerBusy), errors.Is(err, packets.ErrServerUnavailable):
		reason = refusedMaxClients
	default:
		// Connected and left without a CONNECT (a scanner, a health check),
		// or anything else wrong before CONNECT was accepted.
		reason = refusedProtocol
	}
	if reason == "" {
		if err != nil && !errors.Is(err, io.EOF) {
			l.b.env.Logger.Debug("client disconnected", "listener", id, "remote", c.RemoteAddr().String(), "error", err.Error())
		}
		return
	}
	l.refuse(reason, remote, slog.String("listener", id), slog.String("error", err.Error()))
}

// admit registers c, making room when max_clients sockets are open by
// closing the oldest one that has not got past CONNECT: sockets that never
// authenticate cannot lock clients out. It refuses c when every open socket
// is an authenticated client.
func (l *limits) admit(c net.Conn) (*sock, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.conns) >= l.b.MaxClients {
		var oldest *sock
		for _, s := range l.conns {
			if !s.authed && !s.evicted && (oldest == nil || s.accepted.Before(oldest.accepted)) {
				oldest = s
			}
		}
		if oldest == nil {
			return nil, false
		}
		oldest.evicted = true
		_ = oldest.c.Close()
		l.refuse(refusedEvicted, slog.String("remote", oldest.c.RemoteAddr().String()),
			slog.Duration("waited", time.Since(oldest.accepted).Round(time.Millisecond)))
		delete(l.conns, oldest.c) // its slot is the newcomer's now
	}
	s := &sock{c: c, accepted: time.Now()}
	l.conns[c] = s
	return s, true
}

func (l *limits) release(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.conns, c)
}

// authenticated marks the socket of cl as past CONNECT.
func (l *limits) authenticated(cl *mqtt.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.conns[cl.Net.Conn]; s != nil {
		s.authed = true
	}
}

// retain decides whether a retained publish may be kept: a message that
// would take the retained store over max_retained messages or
// max_retained_bytes is delivered but not retained (the topic keeps what
// it had). An empty payload clears the topic, as MQTT says.
func (l *limits) retain(pk *packets.Packet) {
	if !pk.FixedHeader.Retain {
		return
	}
	size := len(pk.TopicName) + len(pk.Payload)
	l.mu.Lock()
	old, had := l.retained[pk.TopicName]
	if len(pk.Payload) == 0 {
		if had {
			delete(l.retained, pk.TopicName)
			l.retainedBytes -= old
		}
		l.mu.Unlock()
		return
	}
	count := len(l.retained)
	if !had {
		count++
	}
	bytes := l.retainedBytes - old + size
	if count > l.b.MaxRetained || bytes > int(l.b.MaxRetainedBytes) {
		l.mu.Unlock()
		pk.FixedHeader.Retain = false
		l.refuse(refusedRetained, slog.String("topic", pk.TopicName), slog.Int("bytes", len(pk.Payload)),
			slog.Int("max_retained", l.b.MaxRetained), slog.String("max_retained_bytes", l.b.MaxRetainedBytes.String()))
		return
	}
	l.retained[pk.TopicName] = size
	l.retainedBytes = bytes
	l.mu.Unlock()
}

// expired forgets a retained message mochi expired.
func (l *limits) expired(topic string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.retained[topic]; ok {
		delete(l.retained, topic)
		l.retainedBytes -= n
	}
}

// limitsHook connects the limits to mochi's hooks.
type limitsHook struct {
	mqtt.HookBase
	l *limits
}

func (h *limitsHook) ID() string { return "ferry-limits" }

func (h *limitsHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnRetainedExpired
}

func (h *limitsHook) OnPublish(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.l.retain(&pk)
	return pk, nil
}

func (h *limitsHook) OnRetainedExpired(filter string) { h.l.expired(filter) }

// windowHook mends mochi's send window for MQTT 5 clients that announce a
// Receive Maximum (a client library's flow control). mochi
// queues the QoS 1 messages beyond the window and, as acknowledgements
// come, sends them one at a time, but stops tracking each once it is sent:
// its PUBACK then finds nothing and gives nothing back, and after twice the
// window every later message for that client stayed queued for good. A
// PUBACK mochi no longer tracks gives its slot back here.
type windowHook struct{ mqtt.HookBase }

func (h *windowHook) ID() string { return "ferry-receive-window" }

func (h *windowHook) Provides(b byte) bool { return b == mqtt.OnPacketRead }

func (h *windowHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Puback {
		if _, tracked := cl.State.Inflight.Get(pk.PacketID); !tracked {
			cl.State.Inflight.IncreaseSendQuota()
		}
	}
	return pk, nil
}

// describe is for the start-up log line.
func (c *Config) describeLimits() []any {
	return []any{"max_clients", c.MaxClients, "max_packet_size", c.MaxPacketSize.String(),
		"connect_timeout", c.ConnectTimeout.String(), "max_queued", c.MaxQueued,
		"max_retained", c.MaxRetained, "max_retained_bytes", c.MaxRetainedBytes.String()}
}
