package router

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"github.com/ferry-gateway/ferry/router/lvc"
	"github.com/ferry-gateway/ferry/router/outlet"
)

// Pipeline is a running configuration: the bus, every connector instance,
// the routing engine between them, and an outlet per sink.
type Pipeline struct {
	cfg     *Config
	logger  *slog.Logger
	reg     *prometheus.Registry
	bus     bus.PubSub // source batches to the engine
	local   bus.PubSub // the in-process bus (also p.bus unless on NATS)
	nats    *natsbus.Bus
	elector *lease.Elector
	metrics *connectors.Metrics
	events  *connectors.Events
	// tags is the last-value cache the engine feeds (the status page's
	// tags view).
	tags    *lvc.Cache
	drops   *prometheus.CounterVec // ferry_outlet_dropped_records_total
	engine  *Engine
	mods    []*running
	outlets map[string]*running // sinks by name, including those a reload is adding
	started time.Time
	// retry is the supervisor's back-off between tries of a module that
	// failed to start.
	retry connectors.Backoff

	runCtx    context.Context
	runCancel context.CancelFunc
	engineEnd context.CancelFunc
	engineWG  sync.WaitGroup

	// mu guards cfg, mods, outlets and each module's Connector and env,
	// which reloads, the supervisor and terms replace while the status
	// page reads them; reloadMu keeps reloads one at a time.
	mu         sync.RWMutex
	reloadMu   sync.Mutex
	lastReload *ReloadStatus
	// fault, in tests, fails a reload at the named step.
	fault func(step string) error
}

type running struct {
	*Module
	env     *connectors.Env
	started atomic.Bool

	// A sink's outlet: the queue the engine hands its batches to, and
	// the spool or memory buffer behind it. It outlives the connector:
	// a reload or a restart swaps the runner reading it, so no batch
	// falls in a gap.
	out    outlet.Queue
	mem    *outlet.Memory // nil unless the outlet is in memory
	spool  *spool.Spool   // nil unless the sink stores and forwards locally
	spoolQ *outlet.Bus    // the queue on spool

	// ownBus, for a source added by a reload, is a bus of its own: the
	// shared one cannot take new subscriptions while batches are in flight
	// (watermill's GoChannel holds its subscriber lock across a blocking
	// publish), so added modules never subscribe on it.
	ownBus bus.PubSub

	// The supervisor of the module: it ends with end, and done is closed
	// once it (and a sink's runner) returned.
	end  context.CancelFunc
	done chan struct{}

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
	p := &Pipeline{
		cfg: c, logger: logger, reg: reg, metrics: connectors.NewMetrics(reg),
		events: connectors.NewEvents(0), outlets: map[string]*running{}, retry: connectors.RestartBackoff,
		tags: lvc.New(0),
	}
	p.drops = connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_outlet_dropped_records_total",
		Help: "Records a sink's in-memory buffer dropped: full (on_full: drop-oldest made room) or shutdown (still buffered when ferry stopped).",
	}, []string{"sink", "reason"}))
	reg.MustRegister(newDrainMetrics(p))
	p.local = bus.NewMemory(logger)
	p.bus = p.local
	if c.Bus.NATS() {
		if err := p.openNATS(); err != nil {
			_ = p.local.Close()
			return nil, err
		}
	}
	for _, m := range c.Modules {
		r, err := p.build(m, p.bus)
		if err != nil {
			p.closeOutlets(p.mods)
			p.closeBuses()
			return nil, err
		}
		p.mods = append(p.mods, r)
	}
	if p.nats != nil {
		p.registerJetStreamGauges()
	}
	p.engine = NewEngine(c.CompiledRoutes(), c.sourceTopics(), p.outletFor, reg, logger)
	p.engine.OnBlock = p.onBlock
	p.engine.Tap = p.tags.Update
	for _, m := range p.mods {
		if len(m.Outputs()) > 0 && !p.routed(m.Name) {
			logger.Warn("source has no route; its records are discarded", "module", m.Name)
		}
	}
	return p, nil
}

// build makes the running form of a module: its Env (publishing on pub)
// and, for a sink, its outlet.
func (p *Pipeline) build(m *Module, pub bus.PubSub) (*running, error) {
	env, err := p.newEnv(m, pub, nil)
	if err != nil {
		return nil, err
	}
	r := &running{Module: m, env: env}
	if m.IsSink() {
		if err := p.openOutlet(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// openOutlet gives a sink its queue: its JetStream stream, its spool, or a
// bounded memory buffer.
func (p *Pipeline) openOutlet(r *running) error {
	m := r.Module
	switch {
	case m.JetStream:
		if p.nats == nil {
			return fmt.Errorf("%s: store_and_forward backend jetstream needs the NATS bus", m.Name)
		}
		if err := p.ensureSinkStream(m); err != nil {
			return err
		}
		r.out = outlet.NewBus(p.nats, SinkTopic(m.Name))
	case m.Spool != nil:
		sc := *m.Spool
		sc.Dir = SpoolDir(p.cfg.DataDir, m)
		sc.Registerer = p.reg
		sp, err := spool.Open(sc, p.logger.With("module", m.Name, "component", "spool"))
		if err != nil {
			return fmt.Errorf("%s: spool: %w", m.Name, err)
		}
		q := outlet.NewBus(sp, SinkTopic(m.Name))
		r.spool, r.spoolQ, r.out = sp, q, q
		if m.Drain != nil {
			r.out = outlet.NewLiveFirst(q, *m.Drain, p.logger.With("module", m.Name, "component", "outlet"))
		}
	default:
		var bc outlet.BufferConfig
		if m.Buffer != nil {
			bc = *m.Buffer
		}
		env, drops := r.env, p.drops
		r.mem = outlet.NewMemory(bc, func(n int, reason string) {
			drops.WithLabelValues(m.Name, reason).Add(float64(n))
			env.Dropped(n, "buffer "+reason, nil)
		})
		r.out = r.mem
	}
	p.mu.Lock()
	p.outlets[m.Name] = r
	p.mu.Unlock()
	return nil
}

// closeOutlet closes a sink's queue: a memory buffer counts what it still
// held as dropped, a spool keeps it on disk for the next start.
func (p *Pipeline) closeOutlet(r *running) {
	if r.out == nil {
		return
	}
	_ = r.out.Close()
	if r.spool != nil {
		if err := r.spool.Close(); err != nil {
			p.logger.Error("close spool", "module", r.Name, "error", err)
		}
	}
	p.mu.Lock()
	if p.outlets[r.Name] == r {
		delete(p.outlets, r.Name)
	}
	p.mu.Unlock()
}

func (p *Pipeline) closeOutlets(mods []*running) {
	for _, m := range mods {
		p.closeOutlet(m)
	}
}

// newEnv builds the Env of one module of the pipeline, publishing on pub;
// seq, when set, numbers its records (an active/standby source's lease).
func (p *Pipeline) newEnv(m *Module, pub bus.PubSub, seq connectors.SeqSource) (*connectors.Env, error) {
	ec := connectors.EnvConfig{
		Name: m.Name, Type: m.Type, Site: p.cfg.Site, DataDir: p.cfg.DataDir,
		Logger: p.logger, Metrics: p.metrics, Outputs: m.Outputs(), Sink: m.IsSink(),
		WriteTag: p.writeTag, Seq: seq, Events: p.events, Retry: p.retry,
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
	env, err := connectors.NewEnv(ec)
	if err != nil {
		return nil, err
	}
	// A crash or a rebuilt sequence store leaves a gap in (source, seq)
	// that the first record announces; the event tells the operator.
	// Told once per process start: a reload shares the store.
	p.mu.RLock()
	starting := p.started.IsZero()
	p.mu.RUnlock()
	if o, ok := env.SeqOpened(); ok && starting && (o.Crash || o.Rebuilt && o.Cause != "missing") {
		ev := connectors.Event{Module: m.Name, Kind: connectors.EventError, Message: "sequence numbers skip after a crash; the first record announces the gap"}
		if o.Rebuilt {
			ev.Message, ev.Error = "sequence store rebuilt: a new epoch of sequence numbers starts", o.Cause
		}
		p.events.Add(ev)
	}
	return env, nil
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

// onBlock hears from the engine that a sink's queue refuses batches (a
// spool on a full disk, a JetStream stream away: err) or takes them again
// (nil). The engine waits meanwhile, and with it every source: they say so
// (blocked, with the reason) rather than look up and idle.
func (p *Pipeline) onBlock(sink string, err error) {
	type envOf struct {
		env    *connectors.Env
		source bool
	}
	var envs []envOf
	var sinkEnv *connectors.Env
	p.mu.RLock()
	for _, m := range p.mods {
		envs = append(envs, envOf{m.env, len(m.Outputs()) > 0 && !m.IsSink()})
	}
	if r := p.outlets[sink]; r != nil {
		sinkEnv = r.env
	}
	p.mu.RUnlock()
	if err != nil && sinkEnv != nil {
		sinkEnv.Error(fmt.Errorf("its queue refuses batches: %w", err))
	}
	for _, e := range envs {
		switch {
		case !e.source:
		case err == nil:
			e.env.Unblock()
		case e.env.State().Phase() == connectors.PhaseUp:
			e.env.Block(fmt.Errorf("waiting for sink %s, whose queue refuses batches: %w", sink, err))
		}
	}
}

// outletFor is where the engine puts a sink's batches.
func (p *Pipeline) outletFor(sink string) outlet.Queue {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if r := p.outlets[sink]; r != nil {
		return r.out
	}
	// Routes are checked against the sinks at load: this is a sink a
	// failed reload took away again. Its batches are dropped, counted.
	return nil
}

// subscriberFor is where the engine reads a source topic.
func (p *Pipeline) subscriberFor(topic string) message.Subscriber {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, m := range p.mods {
		if strings.HasPrefix(topic, m.Name+"/") && m.ownBus != nil {
			return m.ownBus
		}
	}
	return p.bus
}

// busOf is the bus the module publishes on.
func (m *running) busOf(shared bus.PubSub) bus.PubSub {
	if m.ownBus != nil {
		return m.ownBus
	}
	return shared
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

// Events returns the events after id (0: all that are kept), oldest first.
func (p *Pipeline) Events(after uint64) []connectors.Event { return p.events.Since(after) }

// Tags is the last value of every tag the engine has seen.
func (p *Pipeline) Tags() *lvc.Cache { return p.tags }

// WriteTag sends a write to the writer that owns device/tag, the same path
// as an MQTT command: nil when the device took it, ErrUnknownTag,
// ErrNotWritable or the device's error otherwise.
func (p *Pipeline) WriteTag(ctx context.Context, device, tag string, v bus.Value) error {
	return p.writeTag(ctx, device, tag, v)
}

// Connector is the running connector of a module, nil if there is none.
func (p *Pipeline) Connector(module string) connectors.Connector {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, m := range p.mods {
		if m.Name == module {
			return m.Connector
		}
	}
	return nil
}

// EventLog is the pipeline's event ring, for those that wait on it.
func (p *Pipeline) EventLog() *connectors.Events { return p.events }

// Config is the config the pipeline runs.
func (p *Pipeline) Config() *Config {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.cfg
}

// Bus is the pipeline's bus, for tests and tools that watch it.
func (p *Pipeline) Bus() bus.PubSub { return p.bus }

// Start starts the modules in their order (see order) with the engine
// before the sinks and sources. A module that fails to start is retried by
// its supervisor with back-off; the rest run on, and what is routed to a
// sink that is not up waits in its outlet, within its bound.
func (p *Pipeline) Start(ctx context.Context) error {
	p.mu.Lock()
	p.started = time.Now()
	p.mu.Unlock()
	p.runCtx, p.runCancel = context.WithCancel(context.Background())
	var engineCtx context.Context
	engineCtx, p.engineEnd = context.WithCancel(p.runCtx)
	in, err := p.engine.Subscribe(engineCtx, p.subscriberFor)
	if err != nil {
		return err
	}
	p.engineWG.Add(1)
	go func() {
		defer p.engineWG.Done()
		p.engine.Run(engineCtx, in)
	}()
	for _, group := range order(p.mods) {
		for _, m := range group {
			p.launch(m)
		}
	}
	return nil
}

// Stop stops sources first (each within half the time left), then the
// engine once it routed what they emitted, then gives the sinks' memory
// buffers until half the time still left to drain, then stops sinks and
// services. What a buffer still holds then is counted as dropped
// (shutdown); what a spool holds stays on disk.
func (p *Pipeline) Stop(ctx context.Context) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	var (
		mu   sync.Mutex
		errs []error
	)
	stopAll := func(ctx context.Context, mods []*running) {
		var wg sync.WaitGroup
		for _, m := range mods {
			wg.Go(func() {
				if err := p.stopModule(ctx, m); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	groups := order(p.mods)
	for _, m := range groups[groupSinks] {
		if m.mem != nil {
			m.mem.Stopping()
		}
		if m.spoolQ != nil {
			m.spoolQ.Stopping()
		}
	}
	srcCtx, cancel := context.WithTimeout(ctx, remaining(ctx)/2)
	stopAll(srcCtx, groups[groupSources])
	cancel()
	if p.engineEnd != nil {
		// The engine never waits on a sink; what the sources published
		// has been routed into the outlets by now.
		p.engineEnd()
		p.engineWG.Wait()
	}
	drainCtx, cancel := context.WithTimeout(ctx, remaining(ctx)/2)
	for _, m := range groups[groupSinks] {
		// Only a sink that is up can drain; one whose far side is away
		// would only use up the time.
		if m.mem != nil && m.env.State().Phase() == connectors.PhaseUp && !m.mem.WaitEmpty(drainCtx) {
			p.logger.Warn("sink did not drain its buffer in time", "module", m.Name, "records", m.mem.Stats().Records)
		}
	}
	cancel()
	stopAll(ctx, groups[groupSinks])
	stopAll(ctx, groups[groupServices])
	if p.runCancel != nil {
		p.runCancel()
	}
	p.closeOutlets(p.mods)
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

func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return stopDefault
}

// stopDefault bounds a Stop whose context has no deadline.
const stopDefault = 30 * time.Second

// Ready reports whether every connector has started (none is still starting
// or failed), with the names of those that have not.
func (p *Pipeline) Ready() (bool, []string) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var notReady []string
	for _, m := range p.mods {
		// A standby is ready: it is doing its job, which is waiting. So
		// is a started module whose goroutine is being restarted: it is
		// down, not missing.
		switch m.env.State().Phase() {
		case connectors.PhaseStarting, connectors.PhaseFailed, connectors.PhaseStopped:
			notReady = append(notReady, m.Name)
		case connectors.PhaseRetrying:
			if !m.started.Load() {
				notReady = append(notReady, m.Name)
			}
		}
		// A spool that cannot write (a full disk) takes nothing new: the
		// gateway is not doing its job, whatever its modules' phases say.
		if m.spool != nil && m.spool.Stats().WriteFailing {
			notReady = append(notReady, m.Name+" (spool writes failing)")
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
	// Buffer is the in-memory outlet of a sink without store_and_forward.
	Buffer *outlet.MemoryStats `json:"buffer,omitempty"`
	// Lease is the ownership of an active/standby source.
	Lease *lease.Ownership `json:"lease,omitempty"`
	// Diagnostics is what a connectors.Diagnoser adds (per-device counters).
	Diagnostics any `json:"diagnostics,omitempty"`
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
	// Writes to the local spool: failing from a failed write (a full disk)
	// until one succeeds again; the count and the latest error are kept.
	// Drain is what a live-first drain did: live copies sent ahead of the
	// backlog, backfilled and skipped entries (absent in ordered mode).
	Drain *outlet.LiveFirstStats `json:"drain,omitempty"`

	WriteFailing     bool      `json:"write_failing,omitempty"`
	WriteErrors      int64     `json:"write_errors,omitempty"`
	LastWriteError   string    `json:"last_write_error,omitempty"`
	LastWriteErrorAt time.Time `json:"last_write_error_at,omitzero"`
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
		if dg, ok := m.Connector.(connectors.Diagnoser); ok {
			ms.Diagnostics = dg.Diagnostics()
		}
		if m.mem != nil {
			st := m.mem.Stats()
			ms.Buffer = &st
		}
		if m.spool != nil {
			st := m.spool.Stats()
			ms.Spool = &SpoolStatus{
				Backend: BackendLocal, Records: st.Records, Batches: st.Entries, Bytes: st.Bytes, Dropped: st.Dropped,
				WriteFailing: st.WriteFailing, WriteErrors: st.WriteErrors, LastWriteError: st.LastWriteError, LastWriteErrorAt: st.LastWriteErrorAt,
			}
			if !st.Oldest.IsZero() {
				ms.Spool.OldestSeconds = time.Since(st.Oldest).Seconds()
			}
			if lf, ok := m.out.(*outlet.LiveFirst); ok {
				ds := lf.Stats()
				ms.Spool.Drain = &ds
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
			Dropped: r.HeldBack.Load(), Expired: r.Expired.Load(),
		})
	}
	return s, jsSinks
}

// isServiceOnly reports a module that neither emits nor takes batches.
func (m *running) isServiceOnly() bool {
	return !m.IsSink() && len(m.Outputs()) == 0 && m.Roles()&connectors.RoleService != 0
}
