// Package localbroker is ferry's embedded MQTT broker (mochi-mqtt): local
// consumers subscribe to normalized data on readable topics, shims publish
// their payloads in, and users, bcrypt passwords and per-user ACLs decide who
// may do what.
package localbroker

import (
	"bytes"
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/command"
	"github.com/ferry-gateway/ferry/connectors/parse"
	"github.com/ferry-gateway/ferry/connectors/topics"
	"github.com/ferry-gateway/ferry/internal/logfloor"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "localbroker",
		Roles:   connectors.RoleService | connectors.RoleSink | connectors.RoleSource,
		New:     func() connectors.Connector { return &Broker{} },
		Sample:  sample,
		Summary: "embedded MQTT broker: live records for local consumers, shim payloads in, users and ACLs",
	})
}

// Broker is the embedded broker.
type Broker struct {
	Config `yaml:",inline"`

	env     *connectors.Env
	srv     *mqtt.Server
	topic   topics.Template
	batcher *parse.Batcher
	parsers []*parse.Parser
	limits  *limits

	mu   sync.Mutex
	addr map[string]string // listener id → bound address

	// outMu guards the encoding state, set up on the first Write.
	outMu   sync.Mutex
	res     *topics.Resolver
	enc     *bus.JSONEncoder
	shape   bus.JSONShape
	isJSON  bool
	groups  []topics.Group
	payload []byte
}

// Outputs implements connectors.Source: only with subscriptions.
func (b *Broker) Outputs() []string {
	if len(b.Subscribe) == 0 {
		return nil
	}
	return []string{connectors.DefaultOutput}
}

// Start binds the listeners; a port in use fails the start.
func (b *Broker) Start(_ context.Context, env *connectors.Env) error {
	b.env = env
	t, err := topics.Parse(b.Topic)
	if err != nil {
		return err
	}
	b.topic = t
	b.addr = map[string]string{}
	caps := mqtt.NewDefaultServerCapabilities()
	// Records arrive in bursts of a whole batch; a subscriber's queue must
	// hold several bursts before mochi drops for it.
	// The queue is a channel made for every socket as it connects, so
	// its size is memory per socket, authenticated or not.
	caps.MaximumClientWritesPending = int32(b.MaxQueued)
	caps.MaximumInflight = uint16(min(b.MaxQueued, 65535))
	// Checked in the fixed header, before mochi allocates the body.
	caps.MaximumPacketSize = uint32(b.MaxPacketSize)
	caps.MaximumClients = int64(b.MaxClients)
	b.srv = mqtt.New(&mqtt.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       logfloor.New(env.Logger, slog.LevelWarn),
	})
	b.limits = newLimits(b, env)
	for _, h := range []mqtt.Hook{&authHook{b: b, cfg: &b.Config}, &limitsHook{l: b.limits}, &windowHook{}} {
		if err := b.srv.AddHook(h, nil); err != nil {
			return fmt.Errorf("localbroker: %w", err)
		}
	}
	env.Logger.Info("broker limits", b.describeLimits()...)
	add := func(l listeners.Listener) error {
		l = &guard{Listener: l, l: b.limits}
		if err := b.srv.AddListener(l); err != nil {
			return fmt.Errorf("localbroker: listen %s: %w", l.Address(), err)
		}
		b.addr[l.ID()] = l.Address()
		env.Logger.Info("broker listening", "listener", l.ID(), "addr", l.Address())
		return nil
	}
	if b.Listeners.TCP != "off" {
		if err := add(listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.Listeners.TCP})); err != nil {
			return err
		}
	}
	if t := b.Listeners.TLS; t != nil && t.Addr != "off" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("localbroker: tls: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if err := add(listeners.NewTCP(listeners.Config{ID: "tls", Address: t.Addr, TLSConfig: tc})); err != nil {
			return err
		}
	}
	if b.Listeners.WebSocket != "off" {
		if err := add(listeners.NewWebsocket(listeners.Config{ID: "ws", Address: b.Listeners.WebSocket})); err != nil {
			return err
		}
	}
	if len(b.Subscribe) > 0 {
		b.batcher = parse.NewBatcher(env, b.BatchSize)
		for i, s := range b.Subscribe {
			p, err := parse.New(s.Parse)
			if err != nil {
				return fmt.Errorf("subscribe[%d]: %w", i, err)
			}
			b.parsers = append(b.parsers, p)
			if err := b.srv.Subscribe(s.Topic, i+1, b.inline(p)); err != nil {
				return fmt.Errorf("localbroker: subscribe %s: %w", s.Topic, err)
			}
		}
		env.Go("flush", func(ctx context.Context) error { return b.batcher.Run(ctx, b.BatchInterval.D()) })
	}
	if b.Commands.Topic != "off" {
		queue := make(chan *command.Command, 64)
		if err := b.srv.Subscribe(b.Commands.Topic+"/#", len(b.Subscribe)+1, b.commandHandler(queue)); err != nil {
			return fmt.Errorf("localbroker: subscribe commands: %w", err)
		}
		env.Go("commands", func(ctx context.Context) error { return b.runCommands(ctx, queue) })
	}
	if err := b.srv.Serve(); err != nil {
		return fmt.Errorf("localbroker: %w", err)
	}
	return nil
}

// inline reads what shims publish on one subscription. Each subscription
// has its own parser, so the handler needs no topic matching of its own.
func (b *Broker) inline(p *parse.Parser) mqtt.InlineSubFn {
	return func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		_ = b.batcher.Add(func(dst *bus.Batch) error {
			if err := p.Parse(pk.Payload, pk.TopicName, dst); err != nil {
				return fmt.Errorf("topic %s: %w", pk.TopicName, err)
			}
			return nil
		})
	}
}

// Addr returns the bound address of a listener ("tcp", "tls", "ws").
func (b *Broker) Addr(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr[id]
}

// Write publishes batch: with format json (the default) or avro every
// record on its own topic, one message each; with json-lines or json-array
// one message per rendered topic. Messages keep the batch's order.
func (b *Broker) Write(_ context.Context, batch *bus.Batch) error {
	b.outMu.Lock()
	defer b.outMu.Unlock()
	if b.res == nil {
		b.res = topics.NewResolver(b.topic, b.env.Site, b.env.Name)
		b.shape, b.isJSON = bus.ParseJSONShape(b.Format)
		b.enc = b.JSONOutput.Encoder()
	}
	if b.isJSON && b.shape != bus.JSONObjectShape {
		b.groups = b.res.Group(b.groups[:0], batch.Records)
		defer clear(b.groups)
		for _, g := range b.groups {
			b.payload = b.shape.Append(b.enc, b.payload[:0], g.Records)
			if err := b.publish(g.Topic, b.payload); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range batch.Records {
		r := &batch.Records[i]
		if b.isJSON {
			b.payload = b.enc.AppendRecord(b.payload[:0], r)
		} else {
			one := bus.Batch{Records: batch.Records[i : i+1]}
			b.payload = one.AppendAvro(b.payload[:0])
		}
		if err := b.publish(b.res.Topic(r), b.payload); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) publish(topic string, payload []byte) error {
	// mochi keeps the slice for retained messages and queued deliveries,
	// so each publish gets its own copy.
	if err := b.srv.Publish(topic, bytes.Clone(payload), b.Retain, byte(b.QoS)); err != nil {
		return fmt.Errorf("localbroker: publish %s: %w", topic, err)
	}
	return nil
}

// Stop closes the listeners and every client connection, then emits what
// shims published before.
func (b *Broker) Stop(ctx context.Context) error {
	if b.srv == nil {
		return nil
	}
	err := b.srv.Close()
	if b.batcher != nil {
		err = errors.Join(err, b.batcher.Close(ctx))
	}
	return err
}

// authHook checks passwords and ACLs.
type authHook struct {
	mqtt.HookBase
	b   *Broker
	cfg *Config
}

func (h *authHook) ID() string { return "ferry-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *authHook) user(name string) *User {
	for i := range h.cfg.Users {
		if h.cfg.Users[i].Name == name {
			return &h.cfg.Users[i]
		}
	}
	return nil
}

// OnConnectAuthenticate accepts a known user with the right password, and
// anyone when anonymous access is on (or no users are configured).
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	if cl.Net.Inline {
		return true
	}
	name := string(pk.Connect.Username)
	ok := name == "" && (h.cfg.AllowAnonymous || len(h.cfg.Users) == 0)
	if u := h.user(name); u != nil {
		ok = bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), pk.Connect.Password) == nil
	}
	if ok {
		h.b.limits.authenticated(cl)
	}
	return ok
}

// OnACLCheck lets a user subscribe to filters within its read grants and
// publish to topics within its write grants; anonymous clients (when
// allowed) and the broker's own inline client may do anything.
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	u := h.user(string(cl.Properties.Username))
	if u == nil {
		return h.cfg.AllowAnonymous || len(h.cfg.Users) == 0
	}
	for _, a := range u.ACL {
		ok := a.Access == "readwrite" || (write && a.Access == "write") || (!write && a.Access == "read")
		if ok && topics.Within(topic, a.Filter) {
			return true
		}
	}
	// A refused command gets a refused result, so the sender learns why
	// nothing happened; mochi drops the publish itself.
	if write && h.cfg.Commands.Topic != "off" && strings.HasPrefix(topic, h.cfg.Commands.Topic+"/") {
		device, tag, _ := strings.Cut(strings.TrimPrefix(topic, h.cfg.Commands.Topic+"/"), "/")
		c := &command.Command{Device: device, Tag: tag}
		go h.b.reply(c, fmt.Errorf("%w: user %q may not write %s", errRefused, u.Name, topic))
	}
	return false
}

var (
	_ connectors.Sink   = (*Broker)(nil)
	_ connectors.Source = (*Broker)(nil)
)
