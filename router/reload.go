package router

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	Restarted []string `json:"restarted"` // modules whose config changed
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Routes    int      `json:"routes"`
}

// Reload applies a new, already validated config to the running pipeline:
// modules whose section is unchanged keep running untouched (their state,
// uptime and connections); changed ones are stopped and started again with
// the new settings; removed ones are stopped; added ones started; the routes
// are swapped between two batches. A sink keeps its subscription and its
// spool across the swap, so nothing queued is dropped or reset; spool
// settings themselves (and site, data_dir, bus, admin) take effect at the
// next start.
func (p *Pipeline) Reload(ctx context.Context, nc *Config) (ReloadResult, error) {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	var res ReloadResult
	p.mu.RLock()
	old := map[string]*running{}
	for _, m := range p.mods {
		old[m.Name] = m
	}
	p.mu.RUnlock()

	var next, fresh, stopOld []*running
	for _, m := range nc.Modules {
		o := old[m.Name]
		if o != nil && o.Type == m.Type && sameSection(o.Node, m.Node) {
			next = append(next, o)
			delete(old, m.Name)
			continue
		}
		r := &running{Module: m}
		if o != nil {
			// Same name: same topics, same subscription, same spool.
			r.ownBus = o.ownBus
			stopOld = append(stopOld, o)
			delete(old, m.Name)
			res.Restarted = append(res.Restarted, m.Name)
			if o.IsSink() && m.IsSink() {
				// The queue, local or JetStream, stays as it started.
				r.spool, r.msgs, r.subEnd, r.Spool, r.JetStream = o.spool, o.msgs, o.subEnd, o.Spool, o.JetStream
			}
		} else {
			r.ownBus = bus.NewMemory(p.logger)
			res.Added = append(res.Added, m.Name)
		}
		env, err := p.newEnv(m, r.busOf(p.bus), nil)
		if err != nil {
			return res, err
		}
		r.env = env
		fresh = append(fresh, r)
		next = append(next, r)
	}
	var removed []*running
	for _, o := range old {
		removed = append(removed, o)
		res.Removed = append(res.Removed, o.Name)
	}
	slices.Sort(res.Removed)

	// Changed modules stop first; a sink's runner before its connector, so
	// the batch it held goes back to the subscription for the next runner.
	for _, o := range stopOld {
		p.stopRunning(ctx, o)
	}

	p.mu.Lock()
	keep := p.cfg
	nc.Site, nc.DataDir, nc.Bus, nc.Admin = keep.Site, keep.DataDir, keep.Bus, keep.Admin
	p.cfg, p.mods = nc, next
	p.mu.Unlock()

	for _, r := range fresh {
		if r.isServiceOnly() {
			p.startModule(ctx, r)
		}
	}
	for _, r := range fresh {
		if r.IsSink() && r.msgs == nil {
			if r.Spool != nil {
				p.logger.Warn("a sink added by a reload gets its spool at the next start", "module", r.Name)
				r.Spool, r.JetStream = nil, false
			}
			if err := p.subscribeSink(r); err != nil {
				return res, err
			}
		}
	}
	for _, r := range fresh {
		if r.IsSink() {
			p.startSink(ctx, r)
		}
	}
	if err := p.engine.Swap(ctx, nc.CompiledRoutes(), nc.sourceTopics()); err != nil {
		return res, fmt.Errorf("swap routes: %w", err)
	}
	res.Routes = len(nc.Routes)
	for _, r := range fresh {
		if !r.IsSink() && !r.isServiceOnly() {
			if r.ActiveStandby && p.elector != nil {
				p.campaign(r)
				continue
			}
			p.startModule(ctx, r)
		}
	}
	// Removed modules go last, once no route sends to them. A removed sink
	// on the shared bus keeps a discarding reader on its (now idle)
	// subscription: unsubscribing there could deadlock with batches in
	// flight.
	for _, o := range removed {
		p.stopRunning(ctx, o)
		if !o.IsSink() || o.msgs == nil {
			continue
		}
		switch {
		case o.JetStream && p.nats != nil:
			// The shared queue keeps its batches for the instances that
			// still run the sink.
			o.subEnd()
		case o.spool != nil:
			// The spool's subscription is its own, not the shared bus's.
			o.subEnd()
			if err := o.spool.Close(); err != nil {
				p.logger.Error("close spool", "module", o.Name, "error", err)
			}
		case o.ownBus != nil:
			o.subEnd()
			_ = o.ownBus.Close()
		default:
			p.sinkWG.Add(1)
			go func() {
				defer p.sinkWG.Done()
				discard(p.sinkCtx, o.env, o.msgs)
			}()
		}
	}
	p.logger.Info("config reloaded", "restarted", res.Restarted, "added", res.Added, "removed", res.Removed, "routes", res.Routes)
	return res, nil
}

// stopRunning stops one module: a sink's runner, then the connector, then
// its goroutines.
func (p *Pipeline) stopRunning(ctx context.Context, m *running) {
	if p.endCampaign(ctx, m) {
		return
	}
	if m.runnerEnd != nil {
		m.runnerEnd()
		select {
		case <-m.runnerDone:
		case <-ctx.Done():
		}
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if m.started.Load() {
		if err := m.Connector.Stop(stopCtx); err != nil {
			p.logger.Error("stop", "module", m.Name, "error", err)
		}
	}
	if err := m.env.Shutdown(stopCtx); err != nil {
		p.logger.Error("stop", "module", m.Name, "error", err)
	}
	m.env.State().Set(connectors.PhaseStopped)
}

// sameSection compares two connector sections by their YAML, ignoring
// comments and layout.
func sameSection(a, b *yaml.Node) bool {
	return canonical(a) == canonical(b)
}

func canonical(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return fmt.Sprint(n)
	}
	out, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(out)
}

// ReloadStatus is the outcome of the last reload, for /api/status.
type ReloadStatus struct {
	At     time.Time     `json:"at"`
	OK     bool          `json:"ok"`
	Errors []string      `json:"errors,omitempty"`
	Result *ReloadResult `json:"result,omitempty"`
}

// NoteReload records the outcome of a reload attempt, including one whose
// new config did not validate (the old pipeline then keeps running).
func (p *Pipeline) NoteReload(res *ReloadResult, errs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastReload = &ReloadStatus{At: time.Now(), OK: len(errs) == 0, Errors: errs, Result: res}
}
