package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/lease"
	"github.com/ferry-gateway/ferry/bus/natsbus"
	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/connectors"
)

// Pipeline is a running configuration: the bus, every connector instance
// and the routing engine between them.
type Pipeline struct {
	cfg     *Config
	logger  *slog.Logger
	reg     *prometheus.Registry
	bus     bus.PubSub // source batches to the engine
	local   bus.PubSub // routed batches to this instance's sinks
	nats    *natsbus.Bus
	elector *lease.Elector
	metrics *connectors.Metrics
	engine  *Engine
	mods    []*running
	started time.Time

	runCtx    context.Context
	runCancel context.CancelFunc
	engineCtx context.Context
	engineEnd context.CancelFunc
	engineWG  sync.WaitGroup
	sinkWG    sync.WaitGroup
	sinkEnd   context.CancelFunc
	sinkCtx   context.Context

	// mu guards cfg and mods, which a reload replaces while the status
	// page reads them; reloadMu keeps reloads one at a time.
	mu         sync.RWMutex
	reloadMu   sync.Mutex
	lastReload *ReloadStatus
}

type running struct {
	*Module
	env     *connectors.Env
	started atomic.Bool
	spool   *spool.Spool // nil unless the sink stores and forwards

	// ownBus, for a module added by a reload, is a bus of its own: the
	// shared one cannot take new subscriptions while batches are in flight
	// (watermill's GoChannel holds its subscriber lock across a blocking
	// publish), so added modules never subscribe on it.
	ownBus bus.PubSub

	// A sink's subscription outlives the connector behind it: a reload
	// swaps the runner reading msgs, so no batch falls in a gap.
	msgs       <-chan *message.Message
	subEnd     context.CancelFunc
	runnerEnd  context.CancelFunc
	runnerDone chan struct{}

	// An active/standby source campaigns for its lease until leaseEnd.
	leaseEnd  context.CancelFunc
	leaseDone chan struct{}
}

// New builds a pipeline from a loaded config. Nothing runs until Start.
func New(c *Config, logger *slog.Logger) (*Pipeline, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &Pipeline{cfg: c, logger: logger, reg: reg, metrics: connectors.NewMetrics(reg)}
	p.local = bus.NewMemory(logger)
	p.bus = p.local
	if c.Bus.NATS() {
		if err := p.openNATS(); err != nil {
			_ = p.local.Close()
			return nil, err
		}
	}
	for _, m := range c.Modules {
		env, err := p.newEnv(m, p.bus, nil)
		if err != nil {
			p.closeSpools()
			p.closeBuses()
			return nil, err
		}
		r := &running{Module: m, env: env}
		if m.JetStream {
			if err := p.ensureSinkStream(m); err != nil {
				p.closeSpools()
				p.closeBuses()
				return nil, err
			}
		} else if m.Spool != nil {
			sc := *m.Spool
			switch {
			case sc.Dir == "":
				sc.Dir = filepath.Join(c.DataDir, "spool", m.Name)
			case !filepath.IsAbs(sc.Dir):
				sc.Dir = filepath.Join(c.DataDir, sc.Dir)
			}
			sc.Registerer = reg
			sp, err := spool.Open(sc, logger.With("module", m.Name, "component", "spool"))
			if err != nil {
				p.closeSpools()
				p.closeBuses()
				return nil, fmt.Errorf("%s: spool: %w", m.Name, err)
			}
			r.spool = sp
		}
		p.mods = append(p.mods, r)
	}
	if p.nats != nil {
		p.registerJetStreamGauges()
	}
	p.engine = NewEngine(c.CompiledRoutes(), c.sourceTopics(), p.publisherFor, reg, logger)
	for _, m := range p.mods {
		if len(m.Outputs()) > 0 && !p.routed(m.Name) {
			logger.Warn("source has no route; its records are discarded", "module", m.Name)
		}
	}
	return p, nil
}

// newEnv builds the Env of one module of the pipeline, publishing on pub;
// seq, when set, numbers its records (an active/standby source's lease).
func (p *Pipeline) newEnv(m *Module, pub bus.PubSub, seq connectors.SeqSource) (*connectors.Env, error) {
	ec := connectors.EnvConfig{
		Name: m.Name, Type: m.Type, Site: p.cfg.Site, DataDir: p.cfg.DataDir,
		Logger: p.logger, Metrics: p.metrics, Outputs: m.Outputs(), Sink: m.IsSink(),
		WriteTag: p.writeTag, Seq: seq,
	}
	if p.nats != nil {
		ec.Instance = p.nats.Config().Instance
		if len(ec.Outputs) > 0 && !m.ActiveStandby {
			// It runs on every instance, each numbering its own records:
			// (source, seq) stays unique only with the instance in it.
			ec.Source = m.Name + "@" + ec.Instance
		}
	}
	if len(ec.Outputs) > 0 {
		ec.Publisher = pub
	}
	return connectors.NewEnv(ec)
}

// writeTag routes a write-back command to the writer that owns the tag: each
// started writer is asked in turn; ErrUnknownTag passes to the next.
func (p *Pipeline) writeTag(ctx context.Context, device, tag string, v bus.Value) error {
	type writer struct {
		name string
		w    connectors.Writer
	}
	var writers []writer
	p.mu.RLock()
	for _, m := range p.mods {
		// An active/standby source writes only where it runs: on the
		// instance that owns its lease.
		if w, ok := m.Connector.(connectors.Writer); ok && m.started.Load() && m.Roles()&connectors.RoleWriter != 0 {
			writers = append(writers, writer{m.Name, w})
		}
	}
	p.mu.RUnlock()
	for _, m := range writers {
		err := m.w.WriteTag(ctx, device, tag, v)
		if errors.Is(err, connectors.ErrUnknownTag) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		return nil
	}
	return fmt.Errorf("%s/%s: %w", device, tag, connectors.ErrUnknownTag)
}

// publisherFor is where the engine puts a sink's batches: its spool when it
// has one, its JetStream stream when that is its queue, this instance's
// in-process bus otherwise.
func (p *Pipeline) publisherFor(sink string) message.Publisher {
	for _, m := range p.mods {
		if m.Name == sink {
			return m.queue(p)
		}
	}
	return p.local
}

// queue is what holds a sink's routed batches until it takes them.
func (m *running) queue(p *Pipeline) bus.PubSub {
	switch {
	case m.spool != nil:
		return m.spool
	case m.JetStream && p.nats != nil:
		return p.nats
	}
	return m.busOf(p.local)
}

// subscriberFor is where the engine reads a source topic.
func (p *Pipeline) subscriberFor(topic string) message.Subscriber {
	for _, m := range p.mods {
		if strings.HasPrefix(topic, m.Name+"/") {
			return m.busOf(p.bus)
		}
	}
	return p.bus
}

// busOf is the bus the module publishes or is fed on.
func (m *running) busOf(shared bus.PubSub) bus.PubSub {
	if m.ownBus != nil {
		return m.ownBus
	}
	return shared
}

func (p *Pipeline) closeSpools() {
	for _, m := range p.mods {
		if m.spool != nil {
			if err := m.spool.Close(); err != nil {
				p.logger.Error("close spool", "module", m.Name, "error", err)
			}
		}
	}
}

func (p *Pipeline) routed(module string) bool {
	for _, t := range p.engine.Topics() {
		if len(t) > len(module) && t[:len(module)+1] == module+"/" {
			return true
		}
	}
	return false
}

// Registry is the pipeline's metrics registry.
func (p *Pipeline) Registry() *prometheus.Registry { return p.reg }

// Config is the config the pipeline runs.
func (p *Pipeline) Config() *Config {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// Bus is the pipeline's bus, for tests and tools that watch it.
func (p *Pipeline) Bus() bus.PubSub { return p.bus }

// Start starts sinks, then the engine, then sources, so that nothing a
// source emits finds its consumer missing. A connector that fails to start
// is marked failed and logged; the rest run on.
func (p *Pipeline) Start(ctx context.Context) error {
	p.mu.Lock()
	p.started = time.Now()
	p.mu.Unlock()
	p.runCtx, p.runCancel = context.WithCancel(context.Background())
	sinkCtx, sinkEnd := context.WithCancel(p.runCtx)
	p.sinkEnd = sinkEnd
	// Services (simulators, the embedded broker) first: sinks and sources
	// connect to them.
	for _, m := range p.mods {
		if m.isServiceOnly() {
			p.startModule(ctx, m)
		}
	}
	// Every consumer subscribes before any producer starts: the memory bus
	// drops what nobody listens to, and a module can be both (an MQTT
	// connector that uplinks and subscribes).
	p.sinkCtx = sinkCtx
	for _, m := range p.mods {
		if m.IsSink() {
			if err := p.subscribeSink(m); err != nil {
				return err
			}
		}
	}
	p.engineCtx, p.engineEnd = context.WithCancel(p.runCtx)
	in, err := p.engine.Subscribe(p.engineCtx, p.subscriberFor)
	if err != nil {
		return err
	}
	p.engineWG.Add(1)
	go func() {
		defer p.engineWG.Done()
		p.engine.Run(p.engineCtx, in)
	}()
	for _, m := range p.mods {
		if m.IsSink() {
			p.startSink(ctx, m)
		}
	}
	for _, m := range p.mods {
		if !m.IsSink() && !m.isServiceOnly() {
			if m.ActiveStandby && p.elector != nil {
				p.campaign(m)
				continue
			}
			p.startModule(ctx, m)
		}
	}
	return nil
}

// subscribeSink subscribes a sink to its queue.
func (p *Pipeline) subscribeSink(m *running) error {
	ctx, end := context.WithCancel(p.sinkCtx)
	msgs, err := m.queue(p).Subscribe(ctx, SinkTopic(m.Name))
	if err != nil {
		end()
		return fmt.Errorf("subscribe sink %s: %w", m.Name, err)
	}
	m.msgs, m.subEnd = msgs, end
	return nil
}

// startSink starts a sink's connector and the runner that feeds it from its
// subscription; a sink that fails to start gets a runner that discards.
func (p *Pipeline) startSink(ctx context.Context, m *running) {
	started := p.startModule(ctx, m)
	rctx, end := context.WithCancel(p.sinkCtx)
	m.runnerEnd, m.runnerDone = end, make(chan struct{})
	window := 1
	if m.Spool != nil {
		window = m.Spool.Window
	}
	p.sinkWG.Add(1)
	go func() {
		defer p.sinkWG.Done()
		defer close(m.runnerDone)
		if !started {
			if m.JetStream && p.nats != nil {
				// The queue is shared: leave its batches to the instances
				// whose sink runs (ending the subscription gives back the
				// one it held).
				m.subEnd()
				return
			}
			discard(rctx, m.env, m.msgs)
			return
		}
		runSink(rctx, m.Connector.(connectors.Sink), m.env, m.msgs, window)
	}()
}

// discard consumes the batches routed to a sink that failed to start, so
// that it does not stall the sinks beside it; what it drops is counted as
// errors and logged once per burst.
func discard(ctx context.Context, env *connectors.Env, msgs <-chan *message.Message) {
	var dec bus.Decoder
	var b bus.Batch
	for {
		var msg *message.Message
		select {
		case <-ctx.Done():
			return
		case m, ok := <-msgs:
			if !ok {
				return
			}
			msg = m
		}
		b.Reset()
		_ = dec.DecodeMessage(msg, &b)
		env.Error(fmt.Errorf("sink failed to start: %d records dropped", len(b.Records)))
		msg.Ack()
	}
}

func (p *Pipeline) startModule(ctx context.Context, m *running) bool {
	err := m.Connector.Start(ctx, m.env)
	if err != nil {
		m.env.State().Set(connectors.PhaseFailed)
		m.env.Error(fmt.Errorf("start: %w", err))
		p.logger.Error("connector failed to start", "module", m.Name, "connector", m.Type, "error", err)
		// Stop must be safe after a failed start; call it so half-taken
		// resources are released.
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.Connector.Stop(stopCtx)
		_ = m.env.Shutdown(stopCtx)
		cancel()
		return false
	}
	m.started.Store(true)
	if m.env.State().Phase() == connectors.PhaseStarting {
		m.env.Up()
	}
	return true
}

// runSink hands routed batches to a sink. A batch is acknowledged (and, from
// a spool, released) only after the sink took it; errors are retried with
// back-off, so a slow or broken sink back-pressures (or, with a spool,
// queues) instead of losing records. A sink that can pipeline gets up to
// window batches in flight, sent and acknowledged in order.
func runSink(ctx context.Context, s connectors.Sink, env *connectors.Env, msgs <-chan *message.Message, window int) {
	if p, ok := s.(connectors.Pipeliner); ok && window > 1 {
		runPipelined(ctx, p, env, msgs, window)
		return
	}
	var dec bus.Decoder
	for {
		msg, b, ok := nextBatch(ctx, env, &dec, msgs)
		if !ok {
			return
		}
		if !writeWithRetry(ctx, s, env, msg, b) {
			return
		}
	}
}

// next receives the next message, or reports false when ctx ended (a reload
// swapping the runner) or the subscription closed. A message not taken stays
// with the subscription for the next runner.
func next(ctx context.Context, msgs <-chan *message.Message) (*message.Message, bool) {
	select {
	case <-ctx.Done():
		return nil, false
	case m, ok := <-msgs:
		return m, ok
	}
}

// nextBatch receives and decodes the next batch for a sink, counting it in.
// A batch that does not decode is counted as an error and dropped: it
// would not decode on a retry either.
func nextBatch(ctx context.Context, env *connectors.Env, dec *bus.Decoder, msgs <-chan *message.Message) (*message.Message, *bus.Batch, bool) {
	for {
		msg, ok := next(ctx, msgs)
		if !ok {
			return nil, nil, false
		}
		b := &bus.Batch{}
		if err := dec.DecodeMessage(msg, b); err != nil {
			env.Error(err)
			msg.Ack()
			continue
		}
		env.CountIn(len(b.Records))
		return msg, b, true
	}
}

type inflight struct {
	msg  *message.Message
	b    *bus.Batch
	wait func(context.Context) error
}

// runPipelined sends batches as they come and waits for their
// acknowledgements in order in a second goroutine. When a send or an
// acknowledgement fails, sending pauses: the batches still outstanding (sent
// on the broken link) are resolved in order, the failed ones written again,
// and only then does sending go on — so a reconnect never lets newer batches
// overtake older ones. Duplicates remain possible (a batch whose PUBACK was
// lost is sent again): consumers de-duplicate on source and seq.
func runPipelined(ctx context.Context, p connectors.Pipeliner, env *connectors.Env, msgs <-chan *message.Message, window int) {
	q := make(chan inflight, window)
	done := make(chan struct{})
	var g gate
	g.c = sync.NewCond(&g.mu)
	go func() {
		defer close(done)
		for f := range q {
			if err := f.wait(ctx); err != nil {
				if ctx.Err() != nil {
					f.msg.Nack()
					g.settle(len(q))
					continue
				}
				if errors.Is(err, connectors.ErrPoison) {
					env.Error(err)
					f.msg.Ack()
					g.settle(len(q))
					continue
				}
				g.pause()
				if !errors.Is(err, connectors.ErrNotConnected) {
					// Not connected yet is the link's to report (its
					// connect loop does); anything else is this batch's.
					env.Retry()
					env.Down(err)
				}
				writeWithRetry(ctx, p, env, f.msg, f.b)
				g.settle(len(q))
				continue
			}
			delivered(env, f.msg, len(f.b.Records))
			g.settle(len(q))
		}
	}()
	defer func() { g.open(); close(q); <-done }()
	var dec bus.Decoder
	for {
		msg, b, ok := nextBatch(ctx, env, &dec, msgs)
		if !ok {
			return
		}
		if !g.waitOpen(ctx) {
			msg.Nack()
			return
		}
		wait, err := p.Send(ctx, b)
		if err != nil {
			g.pause()
			failed := err
			wait = func(context.Context) error { return failed }
		}
		select {
		case q <- inflight{msg, b, wait}:
		case <-ctx.Done():
			msg.Nack()
			return
		}
	}
}

// gate pauses the sender of a pipelined sink while a failure is resolved.
type gate struct {
	mu     sync.Mutex
	c      *sync.Cond
	paused bool
}

func (g *gate) pause() {
	g.mu.Lock()
	g.paused = true
	g.mu.Unlock()
}

// settle reopens the gate once nothing sent before the failure is left.
func (g *gate) settle(queued int) {
	g.mu.Lock()
	if g.paused && queued == 0 {
		g.paused = false
		g.c.Broadcast()
	}
	g.mu.Unlock()
}

func (g *gate) open() {
	g.mu.Lock()
	g.paused = false
	g.c.Broadcast()
	g.mu.Unlock()
}

// waitOpen blocks while the gate is paused; false when ctx ended.
func (g *gate) waitOpen(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, g.open)
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.paused && ctx.Err() == nil {
		g.c.Wait()
	}
	return ctx.Err() == nil
}

// delivered counts a batch the far side took, marks a sink that was down up
// again, and acknowledges the batch (releasing it from a spool).
func delivered(env *connectors.Env, msg *message.Message, n int) {
	env.CountOut(n)
	env.Sent(n)
	if env.State().Phase() == connectors.PhaseDown {
		env.Up()
	}
	msg.Ack()
}

// writeWithRetry writes b until it is taken, poisoned, or ctx ends (then it
// nacks and reports false).
func writeWithRetry(ctx context.Context, s connectors.Sink, env *connectors.Env, msg *message.Message, b *bus.Batch) bool {
	n := len(b.Records)
	var bo connectors.Backoff
	for {
		err := s.Write(ctx, b)
		if err == nil {
			delivered(env, msg, n)
			return true
		}
		if errors.Is(err, connectors.ErrPoison) {
			env.Error(err)
			msg.Ack()
			return true
		}
		env.Retry()
		env.Down(err)
		if connectors.Sleep(ctx, bo.Next()) != nil {
			msg.Nack()
			return false
		}
	}
}

// Stop stops sources first, then lets the engine and sinks drain what is in
// flight, then stops sinks, all within ctx's deadline. When a sink cannot
// take what is in flight (its far side is down and it has no spool), the
// sources cannot finish either; after half the time left, the sinks' retry
// loops are abandoned so the process still stops in time, and what they held
// is reported as lost.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	var errs []error
	stop := func(ctx context.Context, m *running) {
		if p.endCampaign(ctx, m) {
			return
		}
		if m.started.Load() {
			if err := m.Connector.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop %s: %w", m.Name, err))
			}
		}
		if err := m.env.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
		m.env.State().Set(connectors.PhaseStopped)
	}
	srcCtx, cancel := context.WithTimeout(ctx, remaining(ctx)/2)
	var srcWG sync.WaitGroup
	for _, m := range p.mods {
		if !m.IsSink() && !m.isServiceOnly() {
			srcWG.Add(1)
			go func() { defer srcWG.Done(); stop(srcCtx, m) }()
		}
	}
	if !waitCtx(srcCtx, &srcWG) {
		p.logger.Error("sources did not stop in time: a sink is not taking batches; abandoning its in-flight batches")
		p.abandonSinks()
	}
	cancel()
	srcWG.Wait() // the goroutines return once their Shutdown deadline passed
	// Sources are quiet: whatever they published has been acknowledged by the
	// engine (the memory bus blocks until it is), and the engine acknowledges
	// only after its sinks did. So the engine can go now.
	if p.engineEnd != nil {
		p.engineEnd()
		if !waitCtx(ctx, &p.engineWG) {
			p.abandonSinks()
			p.engineWG.Wait()
		}
	}
	p.abandonSinks()
	p.sinkWG.Wait()
	for _, m := range p.mods {
		if m.IsSink() {
			stop(ctx, m)
		}
	}
	for _, m := range p.mods {
		if m.isServiceOnly() {
			stop(ctx, m)
		}
	}
	if p.runCancel != nil {
		p.runCancel()
	}
	p.closeSpools()
	if err := p.closeBuses(); err != nil {
		errs = append(errs, fmt.Errorf("close bus: %w", err))
	}
	for _, m := range p.mods {
		if m.ownBus != nil {
			_ = m.ownBus.Close()
		}
	}
	return errors.Join(errs...)
}

// abandonSinks ends the sinks' subscriptions; a batch a sink was retrying is
// dropped (it was never acknowledged, so a durable bus would redeliver it).
func (p *Pipeline) abandonSinks() {
	if p.sinkEnd != nil {
		p.sinkEnd()
	}
}

func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return stopDefault
}

// stopDefault bounds a Stop whose context has no deadline.
const stopDefault = 30 * time.Second

// waitCtx waits for wg or ctx, reporting whether wg finished.
func waitCtx(ctx context.Context, wg *sync.WaitGroup) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// Ready reports whether every connector has started (none is still starting
// or failed), with the names of those that have not.
func (p *Pipeline) Ready() (bool, []string) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var notReady []string
	for _, m := range p.mods {
		// A standby is ready: it is doing its job, which is waiting.
		switch m.env.State().Phase() {
		case connectors.PhaseStarting, connectors.PhaseFailed, connectors.PhaseStopped:
			notReady = append(notReady, m.Name)
		}
	}
	return len(notReady) == 0, notReady
}

// Status is the pipeline as /api/status shows it.
type Status struct {
	Site    string    `json:"site"`
	Started time.Time `json:"started"`
	Uptime  float64   `json:"uptime_seconds"`
	Bus     string    `json:"bus"`
	// Instance names this ferry on a shared (NATS) bus.
	Instance string         `json:"instance,omitempty"`
	Modules  []ModuleStatus `json:"modules"`
	Routes   []RouteStatus  `json:"routes"`
	Reload   *ReloadStatus  `json:"last_reload,omitempty"`
}

// ModuleStatus is one connector instance.
type ModuleStatus struct {
	Name    string       `json:"name"`
	Type    string       `json:"type"`
	Roles   string       `json:"roles"`
	Outputs []string     `json:"outputs,omitempty"`
	Spool   *SpoolStatus `json:"spool,omitempty"`
	// Lease is the ownership of an active/standby source.
	Lease *lease.Ownership `json:"lease,omitempty"`
	connectors.Snapshot
}

// SpoolStatus is what waits in a sink's spool.
type SpoolStatus struct {
	Backend       string           `json:"backend"` // local or jetstream
	Records       int64            `json:"records"`
	Batches       int64            `json:"batches"`
	Bytes         int64            `json:"bytes"`
	OldestSeconds float64          `json:"oldest_seconds"`
	Dropped       map[string]int64 `json:"dropped,omitempty"`
}

// RouteStatus is one route and its counters.
type RouteStatus struct {
	Name      string   `json:"name"`
	To        []string `json:"to"`
	Priority  int      `json:"priority"`
	Matched   uint64   `json:"matched"`
	Filtered  uint64   `json:"filtered"`
	Forwarded uint64   `json:"forwarded"`
	Dropped   uint64   `json:"dropped"`
	Expired   uint64   `json:"expired"`
}

// Status snapshots the pipeline.
func (p *Pipeline) Status() Status {
	s, jsSinks := p.status()
	// Asking JetStream takes round trips: not under the lock a starting
	// term waits for.
	for _, i := range jsSinks {
		s.Modules[i].Spool = p.jetStreamStatus(s.Modules[i].Name)
	}
	return s
}

// status snapshots what the pipeline itself holds, with the indexes of the
// modules whose queue is in JetStream.
func (p *Pipeline) status() (s Status, jsSinks []int) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	s = Status{Site: p.cfg.Site, Started: p.started, Bus: p.cfg.Bus.Type, Reload: p.lastReload}
	if p.elector != nil {
		s.Instance = p.elector.Instance()
	}
	if !p.started.IsZero() {
		s.Uptime = time.Since(p.started).Seconds()
	}
	for _, m := range p.mods {
		ms := ModuleStatus{
			Name: m.Name, Type: m.Type, Roles: m.Roles().String(), Outputs: m.Outputs(),
			Snapshot: m.env.State().Snapshot(),
		}
		if m.spool != nil {
			st := m.spool.Stats()
			ms.Spool = &SpoolStatus{Backend: BackendLocal, Records: st.Records, Batches: st.Entries, Bytes: st.Bytes, Dropped: st.Dropped}
			if !st.Oldest.IsZero() {
				ms.Spool.OldestSeconds = time.Since(st.Oldest).Seconds()
			}
		}
		if m.JetStream && p.nats != nil {
			jsSinks = append(jsSinks, len(s.Modules))
		}
		if m.leaseEnd != nil {
			o := p.elector.Status(m.Name)
			ms.Lease = &o
		}
		s.Modules = append(s.Modules, ms)
	}
	for _, r := range p.cfg.CompiledRoutes() {
		s.Routes = append(s.Routes, RouteStatus{
			Name: r.Name, To: r.To, Priority: r.Priority,
			Matched: r.Matched.Load(), Filtered: r.Filtered.Load(), Forwarded: r.Forwarded.Load(),
			Dropped: r.Dropped.Load(), Expired: r.Expired.Load(),
		})
	}
	return s, jsSinks
}

// isServiceOnly reports a module that neither emits nor takes batches.
func (m *running) isServiceOnly() bool {
	return !m.IsSink() && len(m.Outputs()) == 0 && m.Roles()&connectors.RoleService != 0
}
