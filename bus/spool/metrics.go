package spool

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/internal/burstlog"
	"github.com/ferry-gateway/ferry/internal/promreg"
)

// droppedTotal is shared by every spool of a registry, labelled by sink.
func newDroppedTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_spool_dropped_total",
		Help: "Records a spool dropped: reason quota (drop-oldest when full), ttl (expired) or corrupt (damaged on disk).",
	}, []string{"sink", "reason"})
}

// writeErrorsTotal is shared by every spool of a registry, labelled by sink.
func newWriteErrorsTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_spool_write_errors_total",
		Help: "Writes to a spool's files that failed (a full disk, an I/O error): appends, seals, head files, fsyncs.",
	}, []string{"sink"})
}

// metrics are a spool's series. The gauges are computed when scraped, from
// the spool's state, so they are never stale; they carry the sink as a
// constant label so that every spool registers its own collector.
type metrics struct {
	reg     prometheus.Registerer
	sink    string
	drops   *prometheus.CounterVec
	wErrs   prometheus.Counter
	gauges  *gaugeCollector
	bursts  map[string]*burstlog.Burst
	ioBurst *burstlog.Burst
}

func newMetrics(reg prometheus.Registerer, sink string, st *store) *metrics {
	m := &metrics{reg: reg, sink: sink, bursts: map[string]*burstlog.Burst{}, ioBurst: &burstlog.Burst{}}
	for _, r := range []string{reasonQuota, reasonTTL, reasonCorrupt} {
		m.bursts[r] = &burstlog.Burst{}
	}
	if reg == nil {
		return m
	}
	m.drops = promreg.Collector(reg, newDroppedTotal())
	for _, r := range []string{reasonQuota, reasonTTL, reasonCorrupt} {
		m.drops.WithLabelValues(sink, r) // the series exist from the start, at 0
	}
	m.wErrs = promreg.Collector(reg, newWriteErrorsTotal()).WithLabelValues(sink)
	labels := prometheus.Labels{"sink": sink}
	m.gauges = &gaugeCollector{
		st:      st,
		records: prometheus.NewDesc("ferry_spool_records", "Records waiting in the spool (not yet acknowledged by the far side).", nil, labels),
		bytes:   prometheus.NewDesc("ferry_spool_bytes", "Bytes of entries waiting in the spool.", nil, labels),
		oldest:  prometheus.NewDesc("ferry_spool_oldest_seconds", "Age of the oldest entry waiting in the spool; 0 when empty.", nil, labels),
	}
	// A spool of the same sink reopened by a reload replaces the closed one's.
	reg.Unregister(m.gauges)
	if err := reg.Register(m.gauges); err != nil {
		panic("spool: metric registration: " + err.Error())
	}
	return m
}

func (m *metrics) dropped(reason string, n int64) {
	if m.drops != nil {
		m.drops.WithLabelValues(m.sink, reason).Add(float64(n))
	}
}

func (m *metrics) writeError() {
	if m.wErrs != nil {
		m.wErrs.Inc()
	}
}

func (m *metrics) burst(reason string) *burstlog.Burst { return m.bursts[reason] }

func (m *metrics) unregister() {
	if m.reg != nil && m.gauges != nil {
		m.reg.Unregister(m.gauges)
	}
}

type gaugeCollector struct {
	st                     *store
	records, bytes, oldest *prometheus.Desc
}

func (g *gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.records
	ch <- g.bytes
	ch <- g.oldest
}

func (g *gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	now := g.st.now()
	s := g.st.stats(now)
	age := s.OldestAge(now).Seconds()
	ch <- prometheus.MustNewConstMetric(g.records, prometheus.GaugeValue, float64(s.Records))
	ch <- prometheus.MustNewConstMetric(g.bytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(g.oldest, prometheus.GaugeValue, age)
}
