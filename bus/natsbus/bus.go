// Package natsbus is the bus on NATS JetStream: several ferry instances on
// one NATS cluster share it. Sources publish into one stream; the routing
// engine and each sink read through durable consumers that every instance
// joins, so a batch is routed once and delivered once however many
// instances run, and what an instance was holding when it died goes to
// another after ack_wait. A sink's stream, with limits, is also its
// store-and-forward queue.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/burstlog"
)

// Bus is a bus.PubSub on JetStream.
type Bus struct {
	cfg     Config
	logger  *slog.Logger
	srv     *server.Server // the embedded server, when this instance runs one
	nc      *nats.Conn
	js      jetstream.JetStream
	pub     *wmnats.Publisher
	group   string
	closing chan struct{}

	wg        sync.WaitGroup // subscription readers
	closeOnce sync.Once

	mu      sync.Mutex
	windows map[string]int // topic → batches out at once, when not 1
}

func (b *Bus) window(topic string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w := b.windows[topic]; w > 1 {
		return w
	}
	return 1
}

// Options tune Open for tests and tools.
type Options struct {
	// Group names the consumers of this handle. Empty: ferry's own, one per
	// topic shared by every instance. A different group reads every batch
	// again, independently.
	Group string
	// DataDir places a relative embedded store directory.
	DataDir string
}

// Open connects (starting the embedded server first when configured) and
// makes sure the stream of source batches exists.
func Open(ctx context.Context, cfg Config, opt Options, logger *slog.Logger) (*Bus, error) {
	cfg.SetDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	b := &Bus{cfg: cfg, logger: logger, group: opt.Group, closing: make(chan struct{})}
	urls := strings.Join(cfg.URL, ",")
	if e := cfg.Embedded; e != nil {
		ec := *e
		switch {
		case ec.StoreDir == "":
			ec.StoreDir = filepath.Join(opt.DataDir, "nats")
		case !filepath.IsAbs(ec.StoreDir):
			ec.StoreDir = filepath.Join(opt.DataDir, ec.StoreDir)
		}
		srv, err := StartEmbedded(&ec, logger)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		if urls == "" {
			urls = srv.ClientURL()
		}
	}
	nopts, err := cfg.natsOptions(logger)
	if err != nil {
		b.shutdownServer()
		return nil, err
	}
	nc, err := nats.Connect(urls, nopts...)
	if err != nil {
		b.shutdownServer()
		return nil, fmt.Errorf("nats %s: %w", urls, err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		b.Close()
		return nil, fmt.Errorf("nats: jetstream: %w", err)
	}
	if err := b.waitJetStream(ctx); err != nil {
		b.Close()
		return nil, err
	}
	if err := b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "ferry: source batches not yet routed",
		Subjects:    []string{cfg.Subject + ".in.>"},
		Retention:   jetstream.InterestPolicy,
		Discard:     jetstream.DiscardNew,
		MaxBytes:    int64(cfg.MaxBytes),
		MaxAge:      cfg.MaxAge.D(),
		Replicas:    cfg.Replicas,
	}); err != nil {
		b.Close()
		return nil, err
	}
	b.pub, err = wmnats.NewPublisherWithNatsConn(nc, wmnats.PublisherPublishConfig{
		Marshaler:         subjectMarshaler{b},
		SubjectCalculator: b.subjectDetail,
		JetStream:         wmnats.JetStreamConfig{},
	}, bus.WatermillLogger(logger))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("nats: publisher: %w", err)
	}
	return b, nil
}

// natsOptions are the connection settings: reconnect forever (a gateway
// outlives any server restart), authentication, TLS, and logging of link
// changes.
func (c *Config) natsOptions(logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name("ferry " + c.Instance),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectBufSize(-1), // a publish while away fails and is retried; never buffered blindly
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: closed on purpose
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
	}
	switch {
	case c.Credentials != "":
		opts = append(opts, nats.UserCredentials(c.Credentials))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			return nil, fmt.Errorf("nats nkey %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.Token != "" {
		opts = append(opts, nats.Token(c.Token))
	}
	if c.TLS != nil {
		tc, err := c.TLS.Build("")
		if err != nil {
			return nil, fmt.Errorf("nats tls: %w", err)
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// waitJetStream waits until JetStream answers. A request made before a
// cluster has elected its meta leader gets no answer at all, so each try is
// short and they repeat until ctx ends.
func (b *Bus) waitJetStream(ctx context.Context) error {
	burst := burstlog.Burst{Quiet: 10 * time.Second}
	for {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := b.js.AccountInfo(tctx)
		cancel()
		if err == nil {
			return nil
		}
		burst.Log(b.logger, slog.LevelWarn, "waiting for NATS JetStream", slog.String("servers", strings.Join(b.nc.Servers(), ",")), slog.String("error", err.Error()))
		if ctx.Err() != nil {
			return fmt.Errorf("nats %s: JetStream did not answer (is the server reachable, JetStream enabled, the cluster at quorum?): %w", strings.Join(b.nc.Servers(), ","), err)
		}
		b.pause(ctx, 250*time.Millisecond)
	}
}

func (b *Bus) ensureStream(ctx context.Context, sc jetstream.StreamConfig) error {
	return Retry(ctx, func(ctx context.Context) error {
		// An update only when something changed: every instance opens the
		// same streams at start, and an update is a cluster-wide proposal
		// that also races consumer creation inside the server.
		if s, err := b.js.Stream(ctx, sc.Name); err == nil {
			if sameLimits(s.CachedInfo().Config, sc) {
				return nil
			}
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("nats: stream %s: %w", sc.Name, err)
		}
		if _, err := b.js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("nats: stream %s: %w", sc.Name, err)
		}
		return nil
	})
}

// sameLimits compares what ferry sets on a stream.
func sameLimits(have, want jetstream.StreamConfig) bool {
	return have.Retention == want.Retention && have.Discard == want.Discard &&
		have.MaxBytes == want.MaxBytes && have.MaxAge == want.MaxAge &&
		have.Replicas == want.Replicas && slices.Equal(have.Subjects, want.Subjects)
}

// Retry runs op with a short deadline until it succeeds or ctx ends. In a
// cluster whose nodes boot together, a JetStream request can go unanswered
// (its proposal lost to another node's), and only a new request helps.
func Retry(ctx context.Context, op func(context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := op(actx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// SinkLimits bound a sink's stream: its store-and-forward queue.
type SinkLimits struct {
	MaxBytes   int64
	MaxAge     time.Duration
	DiscardOld bool // when full, drop the oldest batches; else refuse new ones (back-pressure)
	// Window is how many batches the sink may hold unacknowledged (a
	// pipelining uplink's window); default 1.
	Window int
}

// EnsureSink creates or updates the stream that holds a sink's batches.
// Batches leave it when the sink has delivered them.
func (b *Bus) EnsureSink(ctx context.Context, sink string, l SinkLimits) error {
	if l.Window > 1 {
		b.mu.Lock()
		if b.windows == nil {
			b.windows = map[string]int{}
		}
		b.windows[sinkTopicPrefix+sink] = l.Window
		b.mu.Unlock()
	}
	discard := jetstream.DiscardNew
	if l.DiscardOld {
		discard = jetstream.DiscardOld
	}
	return b.ensureStream(ctx, jetstream.StreamConfig{
		Name:        b.SinkStream(sink),
		Description: "ferry: batches for sink " + sink,
		Subjects:    []string{b.subject(sinkTopicPrefix + sink)},
		Retention:   jetstream.InterestPolicy,
		Discard:     discard,
		MaxBytes:    l.MaxBytes,
		MaxAge:      l.MaxAge,
		Replicas:    b.cfg.Replicas,
	})
}

// SinkStream names the stream of a sink.
func (b *Bus) SinkStream(sink string) string { return b.cfg.Stream + "_" + token(sink) }

// sinkTopicPrefix is how router topics of sinks start (router.SinkTopic).
const sinkTopicPrefix = "router/"

// subject maps a watermill topic to its subject: batches for a sink go to
// "<subject>.out.<sink>", everything else to "<subject>.in.<topic>" with
// its '/' turned into token separators.
func (b *Bus) subject(topic string) string {
	if s, ok := strings.CutPrefix(topic, sinkTopicPrefix); ok {
		return b.cfg.Subject + ".out." + token(s)
	}
	parts := strings.Split(topic, "/")
	for i, p := range parts {
		parts[i] = token(p)
	}
	return b.cfg.Subject + ".in." + strings.Join(parts, ".")
}

// token makes s one subject token: characters NATS gives meaning to ('.',
// '*', '>', whitespace) and '%' are percent-escaped, so distinct names stay
// distinct.
func token(s string) string {
	if !strings.ContainsAny(s, ".*>% \t\r\n") && s != "" {
		return s
	}
	var sb strings.Builder
	for _, r := range []byte(s) {
		switch r {
		case '.', '*', '>', '%', ' ', '\t', '\r', '\n':
			fmt.Fprintf(&sb, "%%%02X", r)
		default:
			sb.WriteByte(r)
		}
	}
	if sb.Len() == 0 {
		return "%"
	}
	return sb.String()
}

// consumerName is the durable consumer (and deliver group) of a topic in a
// group: only letters, digits, '_' and '-', with a hash so that names that
// differ only in other characters stay apart.
func consumerName(group, topic string) string {
	h := fnv.New32a()
	h.Write([]byte(group + "\x00" + topic))
	var sb strings.Builder
	for _, r := range group + "_" + topic {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			sb.WriteRune(r)
		} else {
			sb.WriteByte('_')
		}
	}
	name := sb.String()
	if len(name) > 48 {
		name = name[:48]
	}
	return name + "_" + strconv.FormatUint(uint64(h.Sum32()), 36)
}

func (b *Bus) groupName() string {
	if b.group == "" {
		return "ferry"
	}
	return b.group
}

func (b *Bus) subjectDetail(_ string, topic string) *wmnats.SubjectDetail {
	return &wmnats.SubjectDetail{Primary: b.subject(topic)}
}

// subjectMarshaler is watermill-nats' header marshaler, sending to the
// topic's subject instead of to the topic itself.
type subjectMarshaler struct{ b *Bus }

func (m subjectMarshaler) Marshal(topic string, msg *message.Message) (*nats.Msg, error) {
	return (&wmnats.NATSMarshaler{}).Marshal(m.b.subject(topic), msg)
}

// Publish publishes to the topic's stream; it returns once JetStream has
// stored the batch (on every replica).
func (b *Bus) Publish(topic string, msgs ...*message.Message) error {
	return b.pub.Publish(topic, msgs...)
}

// Subscribe reads a topic through the group's durable consumer. Batches
// come in order, one at a time for the whole group (up to a sink's window).
//
// This is ferry's own reader rather than watermill-nats' subscriber: that
// one pushes batches into a client-side buffer, and a batch buffered when
// the subscription ends is never answered, which stalls the consumer for
// ack_wait; nor can it tell JetStream that a batch is still being worked
// on. Pulling one batch at a time has neither problem.
func (b *Bus) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	cons, err := b.ensureConsumer(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	window := b.window(topic)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		var acks sync.WaitGroup
		defer close(out)
		defer acks.Wait()
		var burst burstlog.Burst
		for ctx.Err() == nil && !b.isClosing() {
			// A short wait bounds how long the end of the subscription
			// takes; a batch that arrives after it is answered with a nak.
			m, err := cons.Next(jetstream.FetchMaxWait(pullWait))
			if err != nil {
				if !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
					burst.Log(b.logger, slog.LevelWarn, "nats: fetch failed; retrying", slog.String("topic", topic), slog.Any("error", err))
					b.pause(ctx, pullWait)
				}
				continue
			}
			msg, done, ok := b.handle(ctx, m, out)
			if !ok {
				continue
			}
			if window == 1 {
				b.await(ctx, m, msg)
				done()
				continue
			}
			// A pipelining sink takes the next batches before it acks
			// this one; the consumer lets out at most window.
			acks.Add(1)
			go func() { defer acks.Done(); b.await(ctx, m, msg); done() }()
		}
	}()
	return out, nil
}

// pullWait is how long one fetch waits for a batch.
const pullWait = 500 * time.Millisecond

func (b *Bus) isClosing() bool {
	select {
	case <-b.closing:
		return true
	default:
		return false
	}
}

func (b *Bus) pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-b.closing:
	}
}

// handle hands one batch to the reader; a batch it cannot hand over (the
// subscription ended) is given back at once, for the next reader.
func (b *Bus) handle(ctx context.Context, m jetstream.Msg, out chan<- *message.Message) (*message.Message, context.CancelFunc, bool) {
	msg, err := (&wmnats.NATSMarshaler{}).Unmarshal(&nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()})
	if err != nil {
		// A batch no ferry can read is of no use to any reader.
		b.logger.Error("nats: unreadable message dropped", "subject", m.Subject(), "error", err)
		_ = m.Term()
		return nil, nil, false
	}
	// The batch's context ends once it is answered (the caller cancels it
	// after await), as watermill readers expect.
	mctx, cancel := context.WithCancel(ctx)
	msg.SetContext(mctx)
	select {
	case out <- msg:
		return msg, cancel, true
	case <-ctx.Done():
	case <-b.closing:
	}
	cancel()
	_ = m.Nak()
	return nil, nil, false
}

// await answers JetStream for a batch handed over: ack when the reader
// acked, nak when it nacked or the subscription ended. While the reader
// works, the batch is kept ours.
func (b *Bus) await(ctx context.Context, m jetstream.Msg, msg *message.Message) {
	tick := time.NewTicker(b.cfg.AckWait.D() / 3)
	defer tick.Stop()
	for {
		select {
		case <-msg.Acked():
			// A plain ack: it goes out before the next fetch on the same
			// connection, so order holds; if the link drops first, the
			// batch comes again (a duplicate, which (source, seq) absorbs).
			if err := m.Ack(); err != nil {
				b.logger.Warn("nats: ack lost; the batch will be delivered again", "subject", m.Subject(), "error", err)
			}
			return
		case <-msg.Nacked():
		case <-ctx.Done():
		case <-b.closing:
		case <-tick.C:
			_ = m.InProgress()
			continue
		}
		_ = m.Nak()
		return
	}
}

func (b *Bus) streamOf(topic string) string {
	if s, ok := strings.CutPrefix(topic, sinkTopicPrefix); ok {
		return b.SinkStream(s)
	}
	return b.cfg.Stream
}

// SubscribeInitialize creates the topic's durable consumer without reading
// it: batches published from then on wait for it (the streams keep a batch
// only while a consumer has yet to take it).
func (b *Bus) SubscribeInitialize(topic string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := b.ensureConsumer(ctx, topic)
	return err
}

// ensureConsumer creates (or updates) the durable pull consumer of a
// topic in this handle's group. It lets out one batch at a time for the
// whole group (a sink's window, for a pipelining sink), whichever instance
// pulls, so batches are handled in order.
func (b *Bus) ensureConsumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	name := consumerName(b.groupName(), topic)
	var c jetstream.Consumer
	err := Retry(ctx, func(ctx context.Context) error {
		var err error
		c, err = b.js.CreateOrUpdateConsumer(ctx, b.streamOf(topic), jetstream.ConsumerConfig{
			Durable:       name,
			Description:   "ferry: " + topic,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       b.cfg.AckWait.D(),
			MaxAckPending: b.window(topic),
			FilterSubject: b.subject(topic),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nats: consumer %s on stream %s: %w", name, b.streamOf(topic), err)
	}
	return c, nil
}

// JetStream is the bus's JetStream handle, for leases and tools.
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// Conn is the bus's NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Config is the bus's config, defaults filled.
func (b *Bus) Config() Config { return b.cfg }

// SinkStats is what waits in a sink's stream.
type SinkStats struct {
	Batches int64
	Bytes   int64
	Oldest  time.Time
	// Lost counts batches the stream discarded (discard old, or max_age)
	// before the sink's consumer acknowledged them.
	Lost int64
}

// SinkStats reads a sink's stream and consumer state.
func (b *Bus) SinkStats(ctx context.Context, sink string) (SinkStats, error) {
	// Looking the stream and the consumer up fetches their info already:
	// two requests, not four.
	s, err := b.js.Stream(ctx, b.SinkStream(sink))
	if err != nil {
		return SinkStats{}, err
	}
	info := s.CachedInfo()
	st := SinkStats{Batches: int64(info.State.Msgs), Bytes: int64(info.State.Bytes)}
	if info.State.Msgs > 0 {
		st.Oldest = info.State.FirstTime
	}
	if c, err := s.Consumer(ctx, consumerName(b.groupName(), sinkTopicPrefix+sink)); err == nil {
		ci := c.CachedInfo()
		// Interest retention removes acknowledged batches, so the first
		// batch left lying past the ack floor (and what is out for
		// delivery) means some were discarded unacknowledged.
		st.Lost = max(int64(info.State.FirstSeq)-int64(ci.AckFloor.Stream)-1-int64(ci.NumAckPending), 0)
	}
	return st, nil
}

// Close closes the subscriptions, the connection and the embedded server.
func (b *Bus) Close() error {
	b.closeOnce.Do(b.close)
	return nil
}

func (b *Bus) close() {
	close(b.closing)
	// The readers answer their batches (nak) before the connection goes.
	b.wg.Wait()
	if b.nc != nil {
		if err := b.nc.FlushTimeout(time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			b.logger.Debug("nats: flush at close", "error", err)
		}
		b.nc.Close()
	}
	b.shutdownServer()
}

func (b *Bus) shutdownServer() {
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
}
