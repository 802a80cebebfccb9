package router

import (
	"context"
	"fmt"
	"slices"
	"time"

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

// Reload steps, named in a ReloadError.
const (
	StepBuild   = "build"   // Envs and outlets of the changed and added modules
	StepStop    = "stop"    // the old versions of the changed modules
	StepStart   = "start"   // services and sinks of the new config
	StepRoutes  = "routes"  // the engine's tables swapped
	StepSources = "sources" // sources of the new config
)

// ReloadError is a reload that did not apply: Step names where it failed.
// The previous config and its modules run on.
type ReloadError struct {
	Step string
	Err  error
}

func (e *ReloadError) Error() string { return "reload: " + e.Step + ": " + e.Err.Error() }
func (e *ReloadError) Unwrap() error { return e.Err }

// reloadTimeout bounds one reload: stopping and starting modules.
const reloadTimeout = 2 * time.Minute

// Reload applies a new, already validated config to the running pipeline,
// whole or not at all. Modules whose section is unchanged keep running
// untouched (their state, uptime and connections); changed ones are
// stopped and started with the new settings; added ones built and started;
// the routes swapped between two batches; only then are removed modules
// stopped. If any step fails, what the reload started is stopped, the
// routes swapped back and the changed modules' old versions started again:
// the previous config keeps running, and the error (a *ReloadError) names
// the step. A sink keeps its outlet (spool or buffer) across a restart, so
// nothing queued is dropped or reset; spool settings themselves (and site,
// data_dir, bus, admin) take effect at the next start.
//
// A reload runs under a context of its own: a caller that goes away (an
// HTTP client disconnecting) cannot leave it half done.
func (p *Pipeline) Reload(ctx context.Context, nc *Config) (ReloadResult, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
	defer cancel()
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	res, err := p.reload(ctx, nc)
	ev := connectors.Event{Kind: connectors.EventReload, Message: "config reloaded"}
	if err != nil {
		ev.Message, ev.Error = "reload failed; the previous config runs on", err.Error()
		p.logger.Error("reload failed; the previous config runs on", "error", err)
	} else {
		p.logger.Info("config reloaded", "restarted", res.Restarted, "added", res.Added, "removed", res.Removed, "routes", res.Routes)
	}
	p.events.Add(ev)
	return res, err
}

func (p *Pipeline) step(name string) error {
	if p.fault == nil {
		return nil
	}
	return p.fault(name)
}

func (p *Pipeline) reload(ctx context.Context, nc *Config) (ReloadResult, error) {
	var res ReloadResult
	p.mu.RLock()
	oldCfg, oldMods := p.cfg, p.mods
	p.mu.RUnlock()
	old := map[string]*running{}
	for _, m := range oldMods {
		old[m.Name] = m
	}
	nc.Site, nc.DataDir, nc.Bus, nc.Admin = oldCfg.Site, oldCfg.DataDir, oldCfg.Bus, oldCfg.Admin

	// Build: nothing runs yet, and nothing of the old config is touched.
	var next, fresh, changed, added []*running
	fail := func(step string, err error) (ReloadResult, error) {
		return res, &ReloadError{Step: step, Err: err}
	}
	undoBuild := func() {
		p.closeOutlets(added)
		for _, r := range fresh {
			if r.ownBus != nil && old[r.Name] == nil {
				_ = r.ownBus.Close()
			}
		}
	}
	for _, m := range nc.Modules {
		o := old[m.Name]
		if o != nil && o.Type == m.Type && o.Section == m.Section {
			next = append(next, o)
			delete(old, m.Name)
			continue
		}
		r := &running{Module: m}
		if o != nil {
			// Same name: same topics, and a sink keeps its outlet.
			r.ownBus = o.ownBus
			changed = append(changed, o)
			delete(old, m.Name)
			res.Restarted = append(res.Restarted, m.Name)
			if o.IsSink() && m.IsSink() {
				r.out, r.mem, r.spool, r.Spool, r.JetStream, r.Buffer = o.out, o.mem, o.spool, o.Spool, o.JetStream, o.Buffer
			}
		} else {
			if len(m.Outputs()) > 0 {
				r.ownBus = bus.NewMemory(p.logger)
			}
			res.Added = append(res.Added, m.Name)
		}
		env, err := p.newEnv(m, r.busOf(p.bus), nil)
		if err == nil {
			err = p.step(StepBuild)
		}
		if err != nil {
			undoBuild()
			return fail(StepBuild, fmt.Errorf("%s: %w", m.Name, err))
		}
		r.env = env
		if m.IsSink() && r.out == nil {
			if err := p.openOutlet(r); err != nil {
				undoBuild()
				return fail(StepBuild, err)
			}
			added = append(added, r)
		}
		fresh = append(fresh, r)
		next = append(next, r)
	}
	var removed []*running
	for _, o := range oldMods {
		if old[o.Name] == o {
			removed = append(removed, o)
			res.Removed = append(res.Removed, o.Name)
		}
	}
	slices.Sort(res.Removed)

	// From here on a failure is rolled back: what the reload started is
	// stopped, the routes swapped back, the changed modules' old versions
	// started again.
	var startedNew, stoppedOld []*running
	swapped := false
	rollback := func(step string, err error) (ReloadResult, error) {
		for _, r := range slices.Backward(startedNew) {
			if serr := p.stopModule(ctx, r); serr != nil {
				p.logger.Error("reload rollback: stop", "module", r.Name, "error", serr)
			}
		}
		if swapped {
			if serr := p.engine.Swap(ctx, oldCfg.CompiledRoutes(), oldCfg.sourceTopics()); serr != nil {
				p.logger.Error("reload rollback: routes", "error", serr)
			}
		}
		for _, group := range order(stoppedOld) {
			for _, o := range group {
				p.renew(o)
				p.launch(o) // supervised: it comes back by itself if it cannot at once
			}
		}
		// Restored sinks get their outlets back under their own name.
		p.mu.Lock()
		for _, o := range stoppedOld {
			if o.out != nil {
				p.outlets[o.Name] = o
			}
		}
		p.mu.Unlock()
		undoBuild()
		return fail(step, err)
	}

	// Changed modules stop first: the new version may need what the old
	// holds (a port, a device connection). A sink's runner stops before
	// its connector, so the batch it held goes back to the outlet.
	for _, o := range changed {
		if err := p.step(StepStop); err != nil {
			return rollback(StepStop, err)
		}
		// Stopped even when its stop reports an error: it is restarted
		// on a rollback either way.
		err := p.stopModule(ctx, o)
		stoppedOld = append(stoppedOld, o)
		if err != nil {
			return rollback(StepStop, err)
		}
	}
	groups := order(fresh)
	for _, r := range append(groups[groupServices], groups[groupSinks]...) {
		if r.out != nil {
			p.mu.Lock()
			p.outlets[r.Name] = r
			p.mu.Unlock()
		}
		err := p.step(StepStart)
		if err == nil {
			err = p.launchOnce(r)
		}
		if err != nil {
			return rollback(StepStart, err)
		}
		startedNew = append(startedNew, r)
	}
	err := p.step(StepRoutes)
	if err == nil {
		err = p.engine.Swap(ctx, nc.CompiledRoutes(), nc.sourceTopics())
	}
	if err != nil {
		return rollback(StepRoutes, err)
	}
	swapped = true
	// New sources subscribe where the engine reads them: commit the module
	// list they are found in before they start.
	for _, r := range groups[groupSources] {
		err := p.step(StepSources)
		if err == nil {
			err = p.launchOnce(r)
		}
		if err != nil {
			return rollback(StepSources, err)
		}
		startedNew = append(startedNew, r)
	}

	p.mu.Lock()
	p.cfg, p.mods = nc, next
	p.mu.Unlock()
	res.Routes = len(nc.Routes)

	// Removed modules go last, once no route sends to them: sources, then
	// sinks, then services.
	rg := order(removed)
	for _, gi := range []int{groupSources, groupSinks, groupServices} {
		for _, o := range rg[gi] {
			if err := p.stopModule(ctx, o); err != nil {
				p.logger.Error("stop", "module", o.Name, "error", err)
			}
			// A JetStream queue keeps its batches for the instances
			// that still run the sink; a spool keeps them on disk.
			p.closeOutlet(o)
			if o.ownBus != nil {
				_ = o.ownBus.Close()
			}
			// Its tags leave the tags view with it.
			p.tags.Forget(o.Name)
		}
	}
	return res, nil
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
