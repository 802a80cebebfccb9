package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/router/outlet"
)

// The groups modules start in, in this order, and stop in, in reverse.
const (
	// Services (simulators, the embedded broker) first: sinks and sources
	// connect to them.
	groupServices = iota
	// Sinks before sources, so what a source emits finds its way out at
	// once (their outlets take it either way).
	groupSinks
	groupSources
	groupCount
)

// order sorts modules into their start groups. It is the one place the
// order is written: Start, Reload and Stop all go by it.
func order(mods []*running) [groupCount][]*running {
	var g [groupCount][]*running
	for _, m := range mods {
		switch {
		case m.isServiceOnly():
			g[groupServices] = append(g[groupServices], m)
		case m.IsSink():
			g[groupSinks] = append(g[groupSinks], m)
		default:
			g[groupSources] = append(g[groupSources], m)
		}
	}
	return g
}

// launch starts a module under supervision. The first try is made before
// launch returns, so the start order holds; a module that fails it is
// tried again with back-off (state retrying, with the attempt and the time
// of the next try, last_error the cause) until it starts or the pipeline
// stops. A started sink gets its runner, reading its outlet. An
// active/standby source campaigns for its lease instead.
func (p *Pipeline) launch(m *running) { _ = p.supervise(m, true) }

// launchOnce starts a module with one try, for a reload: a module that does
// not start fails the reload, which then keeps the old config running. On
// success it is supervised as launch would.
func (p *Pipeline) launchOnce(m *running) error { return p.supervise(m, false) }

// supervise is launch (retry) or launchOnce (not): the first try before it
// returns, then a goroutine that retries a failed start (when asked) and
// runs the started module until the pipeline stops it.
func (p *Pipeline) supervise(m *running, retry bool) error {
	if m.ActiveStandby && p.elector != nil {
		p.campaign(m)
		return nil
	}
	ctx, end := context.WithCancel(p.runCtx)
	err := p.startOnce(ctx, m)
	if err != nil && !retry {
		end()
		return fmt.Errorf("%s: start: %w", m.Name, err)
	}
	done := make(chan struct{})
	p.mu.Lock()
	m.end, m.done = end, done
	p.mu.Unlock()
	go func() {
		defer close(done)
		bo := p.retry
		for err != nil {
			wait := bo.Next()
			m.env.Retrying(fmt.Errorf("start: %w", err), bo.Attempts(), time.Now().Add(wait))
			if connectors.Sleep(ctx, wait) != nil {
				return
			}
			p.renew(m)
			err = p.startOnce(ctx, m)
		}
		p.run(ctx, m)
	}()
	return nil
}

// run is what a started module does under its supervisor: a sink's runner
// hands it its outlet's batches until ctx ends.
func (p *Pipeline) run(ctx context.Context, m *running) {
	s, ok := m.Connector.(connectors.Sink)
	if !ok || !m.IsSink() || m.out == nil {
		return
	}
	window := 1
	if m.Spool != nil {
		window = m.Spool.Window
	}
	outlet.Run(ctx, s, m.env, m.out, window)
}

// renew readies a module that failed to start for another try: a fresh
// connector from its section, and its Env renewed.
func (p *Pipeline) renew(m *running) {
	p.mu.Lock()
	m.Connector = m.fresh()
	p.mu.Unlock()
	m.env.Renew()
}

// startOnce starts the module's connector once. A failed start is undone
// (Stop, which must be safe after a partial Start, and the Env's
// goroutines), and its error returned.
func (p *Pipeline) startOnce(ctx context.Context, m *running) error {
	if p.fault != nil {
		if err := p.fault("start " + m.Name); err != nil {
			return err
		}
	}
	err := m.Connector.Start(ctx, m.env)
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = m.Connector.Stop(stopCtx)
		_ = m.env.Shutdown(stopCtx)
		cancel()
		return err
	}
	m.started.Store(true)
	switch m.env.State().Phase() {
	case connectors.PhaseStarting, connectors.PhaseRetrying, connectors.PhaseStopped:
		m.env.Up()
	}
	return nil
}

// stopModule stops one module: its supervisor (and a sink's runner, whose
// batch in hand goes back to the head of its outlet), then the connector,
// then the Env's goroutines, all within ctx. The outlet stays: it is
// closed with the pipeline, or when a reload removes the sink.
func (p *Pipeline) stopModule(ctx context.Context, m *running) error {
	if p.endCampaign(ctx, m) {
		return nil
	}
	p.mu.RLock()
	end, done := m.end, m.done
	p.mu.RUnlock()
	if end != nil {
		end()
		t := time.NewTimer(remaining(ctx) / 2)
		select {
		case <-done:
		case <-t.C:
			// A Write that ignores its context: the connector's Stop
			// below is what ends it.
		}
		t.Stop()
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var errs []error
	if m.started.Swap(false) {
		if err := m.Connector.Stop(stopCtx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", m.Name, err))
		}
	}
	if done != nil {
		select {
		case <-done:
		case <-stopCtx.Done():
		}
	}
	if err := m.env.Shutdown(stopCtx); err != nil {
		errs = append(errs, err)
	}
	m.env.SetPhase(connectors.PhaseStopped)
	return errors.Join(errs...)
}
