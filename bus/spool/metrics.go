package spool

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// droppedTotal is shared by every spool of a registry, labelled by sink.
func newDroppedTotal() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_spool_dropped_total",
		Help: "Records a spool dropped: reason quota (drop-oldest when full), ttl (expired) or corrupt (damaged on disk).",
	}, []string{"sink", "reason"})
}

// metrics are a spool's series. The gauges are computed when scraped, from
// the spool's state, so they are never stale; they carry the sink as a
// constant label so that every spool registers its own collector.
type metrics struct {
	reg     prometheus.Registerer
	sink    string
	drops   *prometheus.CounterVec
	gauges  *gaugeCollector
	bursts  map[string]*burst
	ioBurst *burst
}

func newMetrics(reg prometheus.Registerer, sink string, st *store) *metrics {
	m := &metrics{reg: reg, sink: sink, bursts: map[string]*burst{}, ioBurst: &burst{}}
	for _, r := range []string{reasonQuota, reasonTTL, reasonCorrupt} {
		m.bursts[r] = &burst{}
	}
	if reg == nil {
		return m
	}
	m.drops = collector(reg, newDroppedTotal())
	for _, r := range []string{reasonQuota, reasonTTL, reasonCorrupt} {
		m.drops.WithLabelValues(sink, r) // the series exist from the start, at 0
	}
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

func (m *metrics) burst(reason string) *burst { return m.bursts[reason] }

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

// collector registers c on reg, or returns the one already registered under
// the same description (the same helper as connectors.Collector, which the
// spool may not import: connectors depends on bus).
func collector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("spool: metric registration: " + err.Error())
	}
	return c
}

// burst logs the first event of a burst and counts the rest (like
// connectors.Burst, which the spool may not import). A burst ends after
// 30s without events; the next line says how many were not logged.
type burst struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

const burstQuiet = 30 * time.Second

func (b *burst) log(l *slog.Logger, msg string, attrs ...slog.Attr) {
	now := time.Now()
	b.mu.Lock()
	in := !b.last.IsZero() && now.Sub(b.last) < burstQuiet
	b.last = now
	if in {
		b.suppressed++
		b.mu.Unlock()
		return
	}
	n := b.suppressed
	b.suppressed = 0
	b.mu.Unlock()
	if n > 0 {
		attrs = append(attrs, slog.Int("suppressed_since_last", n))
	}
	l.LogAttrs(context.Background(), slog.LevelWarn, msg, attrs...)
}
