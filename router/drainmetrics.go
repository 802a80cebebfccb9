package router

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/router/outlet"
)

// drainMetrics exports what the sinks' live-first outlets did, read from
// the outlets when scraped (the counters are the outlet's own, so a sink
// restarted by a reload starts them again, as Prometheus counters may).
type drainMetrics struct {
	p                      *Pipeline
	batches, behind, ahead *prometheus.Desc
	aheadBytes             *prometheus.Desc
}

func newDrainMetrics(p *Pipeline) *drainMetrics {
	return &drainMetrics{
		p: p,
		batches: prometheus.NewDesc("ferry_drain_batches_total",
			"Batches a live-first sink handled while new data went ahead of its backlog, by path: live (delivered ahead), backfill (sent from the spool, marked), skipped (spool entries released because their live copy was delivered), live_dropped (live copies dropped, sent from the spool instead).",
			[]string{"sink", "path"}, nil),
		behind: prometheus.NewDesc("ferry_drain_behind",
			"1 while a live-first sink sends new data ahead of its backlog, else 0.", []string{"sink"}, nil),
		ahead: prometheus.NewDesc("ferry_drain_live_waiting_batches",
			"Live copies waiting to go ahead of a live-first sink's backlog.", []string{"sink"}, nil),
		aheadBytes: prometheus.NewDesc("ferry_drain_live_waiting_bytes",
			"Bytes of the live copies waiting.", []string{"sink"}, nil),
	}
}

func (d *drainMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.batches
	ch <- d.behind
	ch <- d.ahead
	ch <- d.aheadBytes
}

func (d *drainMetrics) Collect(ch chan<- prometheus.Metric) {
	d.p.mu.RLock()
	defer d.p.mu.RUnlock()
	for _, m := range d.p.mods {
		lf, ok := m.out.(*outlet.LiveFirst)
		if !ok {
			continue
		}
		st := lf.Stats()
		for path, n := range map[string]int64{"live": st.LiveSent, "backfill": st.Backfilled, "skipped": st.Skipped, "live_dropped": st.LiveDropped} {
			ch <- prometheus.MustNewConstMetric(d.batches, prometheus.CounterValue, float64(n), m.Name, path)
		}
		behind := 0.0
		if st.Behind {
			behind = 1
		}
		ch <- prometheus.MustNewConstMetric(d.behind, prometheus.GaugeValue, behind, m.Name)
		ch <- prometheus.MustNewConstMetric(d.ahead, prometheus.GaugeValue, float64(st.LiveWaiting), m.Name)
		ch <- prometheus.MustNewConstMetric(d.aheadBytes, prometheus.GaugeValue, float64(st.LiveBytes), m.Name)
	}
}
