package router

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus/lease"
	"github.com/ferry-gateway/ferry/bus/natsbus"
	"github.com/ferry-gateway/ferry/connectors"
)

// openNATS connects the pipeline to the NATS bus and sets up the election
// of active/standby sources.
func (p *Pipeline) openNATS() error {
	// A node of a cluster that boots with its peers waits for a quorum.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	nc := p.cfg.Bus.Config
	nb, err := natsbus.Open(ctx, nc, natsbus.Options{DataDir: p.cfg.DataDir}, p.logger)
	if err != nil {
		return err
	}
	p.nats, p.bus = nb, nb
	nc = nb.Config()
	var el *lease.Elector
	err = natsbus.Retry(ctx, func(ctx context.Context) error {
		// The buckets belong to the bus (its stream name), so two sites on
		// one NATS cluster with sources of the same name do not share
		// their leases.
		el, err = lease.New(ctx, nb.JetStream(), lease.Config{
			Bucket: nc.Stream + "_leases", SeqBucket: nc.Stream + "_seq",
			Instance: nc.Instance, Lease: nc.Lease.D(), Heartbeat: nc.Heartbeat.D(), Replicas: nc.Replicas,
		}, p.reg, p.logger)
		return err
	})
	if err != nil {
		_ = nb.Close()
		return fmt.Errorf("nats: leases: %w", err)
	}
	p.elector = el
	return nil
}

// ensureSinkStream makes the JetStream stream that queues a sink's batches,
// bounded as its store_and_forward section says.
func (p *Pipeline) ensureSinkStream(m *Module) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sc := m.Spool
	err := p.nats.EnsureSink(ctx, m.Name, natsbus.SinkLimits{
		MaxBytes:   int64(sc.Quota),
		MaxAge:     sc.MaxAge.D(),
		DiscardOld: sc.OnFull != "block",
		Window:     sc.Window,
	})
	if err != nil {
		return fmt.Errorf("%s: store_and_forward: %w", m.Name, err)
	}
	return nil
}

// jetStreamStatus is what waits in a sink's stream, for /api/status.
func (p *Pipeline) jetStreamStatus(sink string) *SpoolStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := p.nats.SinkStats(ctx, sink)
	ss := &SpoolStatus{Backend: BackendJetStream}
	if err != nil {
		return ss
	}
	ss.Batches, ss.Bytes = st.Batches, st.Bytes
	if !st.Oldest.IsZero() {
		ss.OldestSeconds = time.Since(st.Oldest).Seconds()
	}
	if st.Lost > 0 {
		ss.Dropped = map[string]int64{"discarded_batches": st.Lost}
	}
	return ss
}

// campaign runs an active/standby source: it waits as a standby until this
// instance wins the source's lease, runs the connector for as long as the
// lease is held, and stops it when the lease is lost. Each term runs a fresh
// connector and Env, numbering records from the lease so that numbers never
// repeat across instances.
func (p *Pipeline) campaign(m *running) {
	ctx, end := context.WithCancel(p.runCtx)
	p.mu.Lock()
	m.leaseEnd, m.leaseDone = end, make(chan struct{})
	p.mu.Unlock()
	m.env.SetPhase(connectors.PhaseStandby)
	failed := 0 // terms in a row whose start failed
	go func() {
		defer close(m.leaseDone)
		p.elector.Run(ctx, m.Name, func(tctx context.Context, t *lease.Term) {
			env, err := p.newEnv(m.Module, m.busOf(p.bus), t)
			if err != nil {
				m.env.Error(err)
				return
			}
			p.mu.Lock()
			m.Connector = m.fresh()
			old := m.env
			m.env = env
			p.mu.Unlock()
			// The Env before: the one built at load (never started) or the
			// last term's (already shut down, unless a goroutine of it
			// outlived its stop; that one emits nothing any more, its term
			// refuses numbers).
			sctx, scancel := context.WithTimeout(context.Background(), time.Second)
			_ = old.Shutdown(sctx)
			scancel()
			if err := p.startOnce(tctx, m); err != nil {
				// Returning gives the lease up: a standby whose device or
				// port is fine gets its turn instead of this instance
				// holding the source without running it.
				failed++
				env.Retrying(fmt.Errorf("start: %w", err), failed, time.Now().Add(p.nats.Config().Lease.D()))
				return
			}
			failed = 0
			<-tctx.Done()
			// A lost lease leaves one heartbeat before a standby may start
			// the source elsewhere: the device must not be polled twice, so
			// the stop is cut short. A shutdown keeps the lease renewed
			// until the stop is done, and can take its time.
			wait := 10 * time.Second
			if ctx.Err() == nil {
				wait = p.nats.Config().Heartbeat.D() / 2
			}
			stopCtx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if m.started.Swap(false) {
				if err := m.Connector.Stop(stopCtx); err != nil {
					p.logger.Error("stop", "module", m.Name, "error", err)
				}
			}
			if err := env.Shutdown(stopCtx); err != nil && !errors.Is(err, context.Canceled) {
				p.logger.Error("stop", "module", m.Name, "error", err)
			}
			env.SetPhase(connectors.PhaseStandby)
		})
	}()
}

// endCampaign stops an active/standby source: the term, if this instance
// holds one, stops the connector and hands the lease on. It reports false
// for a module that is not active/standby.
func (p *Pipeline) endCampaign(ctx context.Context, m *running) bool {
	if m.leaseEnd == nil {
		return false
	}
	m.leaseEnd()
	select {
	case <-m.leaseDone:
	case <-ctx.Done():
	}
	p.mu.RLock()
	env := m.env
	p.mu.RUnlock()
	env.SetPhase(connectors.PhaseStopped)
	return true
}

// closeBuses closes the in-process bus and, on NATS, the connection (and
// the embedded server).
func (p *Pipeline) closeBuses() error {
	var errs []error
	if p.local != nil {
		errs = append(errs, p.local.Close())
	}
	if p.nats != nil {
		errs = append(errs, p.nats.Close())
	}
	return errors.Join(errs...)
}

// jetStreamGauges exports the depth of the sinks' JetStream queues under
// the names (and help) the local spool uses, read from the streams when
// scraped. A stream counts batches, not records: ferry_spool_batches is
// its own series.
type jetStreamGauges struct {
	p                      *Pipeline
	sinks                  []string
	batches, bytes, oldest *prometheus.Desc
}

func (p *Pipeline) registerJetStreamGauges() {
	var sinks []string
	for _, m := range p.cfg.Modules {
		if m.JetStream {
			sinks = append(sinks, m.Name)
		}
	}
	if len(sinks) == 0 {
		return
	}
	p.reg.MustRegister(&jetStreamGauges{
		p: p, sinks: sinks,
		batches: prometheus.NewDesc("ferry_spool_batches", "Batches waiting in a sink's JetStream queue (not yet acknowledged by the far side).", []string{"sink"}, nil),
		bytes:   prometheus.NewDesc("ferry_spool_bytes", "Bytes of entries waiting in the spool.", []string{"sink"}, nil),
		oldest:  prometheus.NewDesc("ferry_spool_oldest_seconds", "Age of the oldest entry waiting in the spool; 0 when empty.", []string{"sink"}, nil),
	})
}

func (g *jetStreamGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.batches
	ch <- g.bytes
	ch <- g.oldest
}

func (g *jetStreamGauges) Collect(ch chan<- prometheus.Metric) {
	for _, s := range g.sinks {
		st := g.p.jetStreamStatus(s)
		ch <- prometheus.MustNewConstMetric(g.batches, prometheus.GaugeValue, float64(st.Batches), s)
		ch <- prometheus.MustNewConstMetric(g.bytes, prometheus.GaugeValue, float64(st.Bytes), s)
		ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, st.OldestSeconds, s)
	}
}
