package connectors

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/internal/promreg"
)

// Metrics are the per-module series every connector has. One set exists per
// pipeline registry, so tests and reloads never fight over the global one.
type Metrics struct {
	Reg        prometheus.Registerer
	RecordsIn  *prometheus.CounterVec
	RecordsOut *prometheus.CounterVec
	Errors     *prometheus.CounterVec
	Up         *prometheus.GaugeVec
	// For sinks: records delivered, failed writes retried, and the link.
	SinkSent    *prometheus.CounterVec
	SinkRetries *prometheus.CounterVec
	LinkUp      *prometheus.GaugeVec
}

// NewMetrics registers the connector series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Reg: reg,
		RecordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_records_in_total", Help: "Records a module received (read from a device, or taken from the bus by a sink).",
		}, []string{"module"}),
		RecordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_records_out_total", Help: "Records a module handed on (published on the bus, or delivered by a sink).",
		}, []string{"module"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_connector_errors_total", Help: "Errors a connector met (device, link, parse, write).",
		}, []string{"module"}),
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_connector_up", Help: "1 while the connector is up, 0 otherwise.",
		}, []string{"module"}),
	}
	m.SinkSent = Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_sink_sent_total", Help: "Records a sink delivered (acknowledged by the far side).",
	}, []string{"sink"}))
	m.SinkRetries = Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ferry_sink_retries_total", Help: "Batch writes a sink retried after a failure.",
	}, []string{"sink"}))
	m.LinkUp = Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "ferry_link_up", Help: "1 while a sink's link to its far side is up.",
	}, []string{"sink"}))
	m.RecordsIn = Collector(reg, m.RecordsIn)
	m.RecordsOut = Collector(reg, m.RecordsOut)
	m.Errors = Collector(reg, m.Errors)
	m.Up = Collector(reg, m.Up)
	return m
}

// Collector registers c on reg, or returns the collector already registered
// under the same description, so that a connector restarted by a reload can
// register its series again.
func Collector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	return promreg.Collector(reg, c)
}
