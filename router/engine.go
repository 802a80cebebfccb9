package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router/outlet"
	"github.com/ferry-gateway/ferry/router/transform"
)

// SinkTopic is the bus topic a sink's routed batches arrive on.
func SinkTopic(sink string) string { return connectors.Topic("router", sink) }

// lane collects, per input batch, the records going to one sink at one
// priority and TTL; it becomes one output batch.
type lane struct {
	sink     string
	out      outlet.Queue
	priority int
	ttl      time.Duration
	batch    bus.Batch
}

type compiled struct {
	*Route
	chain transform.Next
	count [5]uint64 // matched, filtered, forwarded, held back, expired within one input batch
	prom  [5]prometheus.Counter
}

const (
	cMatched = iota
	cFiltered
	cForwarded
	cHeldBack
	cExpired
)

// resultNames label ferry_route_records_total. A record a transform does
// not pass on (a deadband, a rate limit, a minimum interval) is held back,
// not lost: the tag's next change goes through. Before issue 15 it was
// "dropped", which read as loss.
var resultNames = [5]string{"matched", "filtered", "forwarded", "held_back", "expired"}

// Engine applies the routes to input batches and publishes what they
// forward. It processes one batch at a time, from one goroutine: transforms
// keep per-tag state, and a single consumer is what keeps their state
// consistent and the output in order. A reload swaps its tables between two
// batches.
type Engine struct {
	*tables
	logger *slog.Logger
	now    func() time.Time
	vec    *prometheus.CounterVec
	outFor func(sink string) outlet.Queue
	swaps  chan swap
	// pubBurst logs a refusing sink queue once per window.
	pubBurst connectors.Burst
	// OnBlock, when set, hears when a sink's queue starts refusing batches
	// (err is why: a full disk under a spool, a JetStream stream away) and
	// when it takes them again (err nil). Meanwhile the engine waits, and
	// the sources with it: the pipeline says so on their state.
	OnBlock func(sink string, err error)
	// Tap, when set, sees every decoded input batch before it is routed,
	// as the source produced it (transforms work on copies): the pipeline's
	// last-value cache. It runs on the engine's goroutine, so it must not
	// block and, on the hot path, must not allocate per record.
	Tap func(b *bus.Batch)

	subMu      sync.Mutex
	subFor     func(topic string) message.Subscriber
	subCtx     context.Context
	out        chan delivery
	subscribed map[string]bool

	dec bus.Decoder
	in  bus.Batch
	tmp bus.Record
}

// tables are the compiled routes, indexed by input topic, and their lanes.
type tables struct {
	routes  []*compiled
	byTopic map[string][]*compiled
	lanes   []*lane
}

type swap struct {
	t    *tables
	done chan struct{}
}

// NewEngine builds the engine for routes over the given input topics. outFor
// is each sink's outlet: the queue the engine hands its batches to without
// waiting on the sink.
func NewEngine(routes []*Route, topics []string, outFor func(sink string) outlet.Queue, reg prometheus.Registerer, logger *slog.Logger) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{logger: logger.With("module", "router"), now: time.Now, outFor: outFor, swaps: make(chan swap)}
	e.vec = connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_route_records_total",
		Help: "Records per route and result: matched (from and tags), filtered (where was false), forwarded, held_back (not passed on by a transform: deadband, rate limit, min interval), expired (older than ttl).",
	}, []string{"route", "result"}))
	e.tables = e.build(routes, topics)
	return e
}

func (e *Engine) build(routes []*Route, topics []string) *tables {
	t := &tables{byTopic: map[string][]*compiled{}}
	laneIdx := map[string]*lane{}
	for _, r := range routes {
		c := &compiled{Route: r}
		for i := range c.prom {
			c.prom[i] = e.vec.WithLabelValues(r.Name, resultNames[i])
		}
		var lanes []*lane
		for _, sink := range r.To {
			key := sink + "\x00" + strconv.Itoa(r.Priority) + "\x00" + r.TTL.String()
			l := laneIdx[key]
			if l == nil {
				l = &lane{sink: sink, out: e.outFor(sink), priority: r.Priority, ttl: r.TTL}
				laneIdx[key] = l
				t.lanes = append(t.lanes, l)
			}
			lanes = append(lanes, l)
		}
		c.chain = transform.Chain(func(rec *bus.Record) bool {
			for _, l := range lanes {
				l.batch.Records = append(l.batch.Records, *rec)
			}
			return true
		}, r.steps...)
		t.routes = append(t.routes, c)
		for _, tp := range topics {
			if r.matchesTopic(tp) {
				t.byTopic[tp] = append(t.byTopic[tp], c)
			}
		}
	}
	return t
}

// Swap replaces the routes between two batches, subscribing to any input
// topic that is new. It returns once the engine uses the new routes (or ctx
// ends).
func (e *Engine) Swap(ctx context.Context, routes []*Route, topics []string) error {
	t := e.build(routes, topics)
	var fresh []string
	for tp := range t.byTopic {
		fresh = append(fresh, tp)
	}
	if err := e.subscribe(fresh); err != nil {
		return err
	}
	s := swap{t, make(chan struct{})}
	select {
	case e.swaps <- s:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Topics returns the input topics some route takes.
func (e *Engine) Topics() []string {
	out := make([]string, 0, len(e.byTopic))
	for t := range e.byTopic {
		out = append(out, t)
	}
	return out
}

// Route applies the routes for topic to b and fills the lanes. It is the hot
// path: no allocation per record once lanes and transform state are warm.
func (e *Engine) Route(topic string, b *bus.Batch) {
	now := e.now().UnixNano()
	for _, c := range e.byTopic[topic] {
		ttl := int64(c.TTL)
		for i := range b.Records {
			rec := &b.Records[i]
			if !c.matchesTag(rec.Tag) {
				continue
			}
			c.count[cMatched]++
			if ttl > 0 && now-rec.SourceTime > ttl {
				c.count[cExpired]++
				continue
			}
			if c.where != nil && !c.where(rec) {
				c.count[cFiltered]++
				continue
			}
			e.tmp = *rec
			if c.chain(&e.tmp) {
				c.count[cForwarded]++
			} else {
				c.count[cHeldBack]++
			}
		}
		e.flushCounts(c)
	}
}

func (e *Engine) flushCounts(c *compiled) {
	for i, n := range c.count {
		if n == 0 {
			continue
		}
		c.prom[i].Add(float64(n))
		switch i {
		case cMatched:
			c.Matched.Add(n)
		case cFiltered:
			c.Filtered.Add(n)
		case cForwarded:
			c.Forwarded.Add(n)
		case cHeldBack:
			c.HeldBack.Add(n)
		case cExpired:
			c.Expired.Add(n)
		}
		c.count[i] = 0
	}
}

// Flush hands every non-empty lane to its sink's outlet as one batch and
// empties it. An outlet takes a batch without waiting on its sink; only a
// full outlet under on_full: block, or a durable queue that refuses, makes
// the engine wait.
func (e *Engine) Flush(ctx context.Context) error {
	for _, l := range e.lanes {
		if len(l.batch.Records) == 0 {
			continue
		}
		if l.out == nil {
			l.batch.Reset() // a sink a failed reload took away
			continue
		}
		meta := outlet.Meta{Priority: l.priority, TTL: l.ttl}
		// A queue that refuses (a JetStream stream full under on_full:
		// block, the server away) is waited for here, lane by lane: routing
		// the input again would send the lanes already out a second time.
		bo := connectors.Backoff{Max: 5 * time.Second}
		for blocked := false; ; blocked = true {
			err := l.out.Put(ctx, &l.batch, meta)
			if err == nil {
				l.batch.Reset()
				if blocked && e.OnBlock != nil {
					e.OnBlock(l.sink, nil)
				}
				break
			}
			// A queue told the pipeline is stopping refuses at once: the
			// input goes back now rather than hold its source until the
			// stop's deadline.
			stopping := errors.Is(err, bus.ErrStopping)
			if !stopping {
				if !blocked && e.OnBlock != nil {
					e.OnBlock(l.sink, err)
				}
				e.pubBurst.Log(e.logger, slog.LevelWarn, "sink's queue refused a batch; retrying", slog.String("sink", l.sink), slog.String("error", err.Error()))
			}
			if stopping || connectors.Sleep(ctx, bo.Next()) != nil {
				// Stopping: the input goes back whole for another
				// instance (or the next start); what the lanes hold is
				// dropped with it.
				for _, o := range e.lanes {
					o.batch.Reset()
				}
				return fmt.Errorf("router: publish to %s: %w: %w", l.sink, errPublish, err)
			}
		}
	}
	return nil
}

// errPublish marks a failure to hand a routed batch on: the bus refused it
// (a NATS stream full, the server away), and the input is worth retrying.
var errPublish = errors.New("sink's queue refused the batch")

// Handle reads one input message's batch, routes it and publishes the result.
func (e *Engine) Handle(ctx context.Context, topic string, msg *message.Message) error {
	e.in.Reset()
	// A batch lent on the in-process bus is read where it is: Route copies
	// each record it forwards, and the publisher waits for the ack.
	in, err := e.dec.Batch(msg, &e.in)
	if err != nil {
		return fmt.Errorf("router: input %s: %w", topic, err)
	}
	if e.Tap != nil {
		e.Tap(in)
	}
	e.Route(topic, in)
	return e.Flush(ctx)
}

type delivery struct {
	topic string
	msg   *message.Message
	local bool // from the in-process bus, which can refuse it (bus.Refuse)
}

// Subscribe subscribes to every input topic. It returns once the
// subscriptions exist, so sources started afterwards lose nothing; Run then
// consumes them. The subscriptions end with ctx.
func (e *Engine) Subscribe(ctx context.Context, subFor func(topic string) message.Subscriber) (<-chan delivery, error) {
	e.subMu.Lock()
	e.subFor, e.subCtx, e.out, e.subscribed = subFor, ctx, make(chan delivery), map[string]bool{}
	e.subMu.Unlock()
	if err := e.subscribe(e.Topics()); err != nil {
		return nil, err
	}
	return e.out, nil
}

// subscribe adds subscriptions for the topics not subscribed yet, each on
// the bus its source publishes on. A topic no route takes any more keeps its
// subscription: its batches are acknowledged and dropped, as for any
// unrouted source.
func (e *Engine) subscribe(topics []string) error {
	e.subMu.Lock()
	defer e.subMu.Unlock()
	for _, topic := range topics {
		if e.subscribed[topic] {
			continue
		}
		sub := e.subFor(topic)
		ch, err := sub.Subscribe(e.subCtx, topic)
		if err != nil {
			return fmt.Errorf("router: subscribe %s: %w", topic, err)
		}
		e.subscribed[topic] = true
		ctx, out, local := e.subCtx, e.out, bus.InProcess(sub)
		go func() {
			for m := range ch {
				select {
				case out <- delivery{topic, m, local}:
				case <-ctx.Done():
					m.Nack()
					return
				}
			}
		}()
	}
	return nil
}

// Run routes deliveries until in is closed or ctx ends. A batch that cannot
// be decoded is counted and dropped (acknowledged): it would never decode on
// a retry.
func (e *Engine) Run(ctx context.Context, in <-chan delivery) {
	var burst connectors.Burst
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-e.swaps:
			e.tables = s.t
			close(s.done)
		case d, ok := <-in:
			if !ok {
				return
			}
			err := e.Handle(ctx, d.topic, d.msg)
			if d.local && errors.Is(err, bus.ErrStopping) {
				// Given back on the in-process bus it would come again at
				// once and hold its source: refused, the source keeps it.
				bus.Refuse(d.msg, err)
				continue
			}
			if errors.Is(err, errPublish) || ctx.Err() != nil {
				// Stopping before the sinks surely took it: given back, the
				// batch comes again (JetStream hands it to another
				// instance); a duplicate at worst, never a loss.
				d.msg.Nack()
				continue
			}
			if err != nil {
				burst.Log(e.logger, slog.LevelError, "routing failed", slog.String("error", err.Error()))
			}
			d.msg.Ack()
		}
	}
}
