package modbus

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/connectors"
)

// metrics are the connector's own series, next to the per-module ones
// every connector has.
type metrics struct {
	requests   *prometheus.CounterVec // module, device
	exceptions *prometheus.CounterVec // module, device, code
	failures   *prometheus.CounterVec // module, device, reason (no_answer, not_connected, malformed)
	reconnects *prometheus.CounterVec // module, endpoint
	writes     *prometheus.CounterVec // module, device, result
	learned    *prometheus.CounterVec // module, device
	cycle      *prometheus.GaugeVec   // module, device
	deviceUp   *prometheus.GaugeVec   // module, device
	responses  *prometheus.CounterVec // module, device
	latency    *prometheus.HistogramVec
	learnedMax *prometheus.GaugeVec // module, device, area
	avoided    *prometheus.GaugeVec // module, device, area
}

func newMetrics(m *connectors.Metrics) *metrics {
	var reg prometheus.Registerer
	if m != nil {
		reg = m.Reg
	}
	return &metrics{
		requests: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_requests_total", Help: "Modbus requests sent (reads and writes), per device.",
		}, []string{"module", "device"})),
		exceptions: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_exceptions_total", Help: "Modbus exception responses, per device and exception code.",
		}, []string{"module", "device", "code"})),
		failures: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_failures_total", Help: "Requests that got no valid answer, per device and reason (no_answer, not_connected, malformed).",
		}, []string{"module", "device", "reason"})),
		reconnects: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_reconnects_total", Help: "Connections closed and reopened after a failed exchange (the goburrow/modbus #64 defence).",
		}, []string{"module", "endpoint"})),
		writes: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_writes_total", Help: "Write-back requests, per device and result (ok, exception, failed).",
		}, []string{"module", "device", "result"})),
		learned: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_learned_limits_total", Help: "Limits learned from a device's illegal-address exceptions.",
		}, []string{"module", "device"})),
		cycle: connectors.Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_modbus_poll_cycle_seconds", Help: "Duration of the device's last poll cycle.",
		}, []string{"module", "device"})),
		deviceUp: connectors.Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_modbus_device_up", Help: "1 while the device answers, 0 otherwise.",
		}, []string{"module", "device"})),
		responses: connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_modbus_responses_total", Help: "Answers (data or exception) to Modbus reads, per device.",
		}, []string{"module", "device"})),
		latency: connectors.Collector(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_modbus_request_duration_seconds", Help: "Time from a read request to its answer (data or exception), per device.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"module", "device"})),
		learnedMax: connectors.Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_modbus_learned_max_count", Help: "The longest read (registers or bits) learned for a device's area; absent when none was learned.",
		}, []string{"module", "device", "area"})),
		avoided: connectors.Collector(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_modbus_learned_avoided_ranges", Help: "Address ranges of a device's area learned to be rejected, read alone.",
		}, []string{"module", "device", "area"})),
	}
}

// deviceMetrics are one device's series, resolved once so the poll loop
// only increments.
type deviceMetrics struct {
	module, device string
	all            *metrics
	requests       prometheus.Counter
	noAnswer       prometheus.Counter
	notConnected   prometheus.Counter
	malformed      prometheus.Counter
	learned        prometheus.Counter
	cycle          prometheus.Gauge
	up             prometheus.Gauge
	responses      prometheus.Counter
	latency        prometheus.Observer
	exceptions     [256]prometheus.Counter // resolved on first use
}

func (m *metrics) device(module, device string) *deviceMetrics {
	return &deviceMetrics{
		module: module, device: device, all: m,
		requests:     m.requests.WithLabelValues(module, device),
		noAnswer:     m.failures.WithLabelValues(module, device, "no_answer"),
		notConnected: m.failures.WithLabelValues(module, device, "not_connected"),
		malformed:    m.failures.WithLabelValues(module, device, "malformed"),
		learned:      m.learned.WithLabelValues(module, device),
		cycle:        m.cycle.WithLabelValues(module, device),
		up:           m.deviceUp.WithLabelValues(module, device),
		responses:    m.responses.WithLabelValues(module, device),
		latency:      m.latency.WithLabelValues(module, device),
	}
}

// setLearned shows what was learned about the device as gauges.
func (d *deviceMetrics) setLearned(l *learnedDevice) {
	for a := Coil; a <= Holding; a++ {
		la := l.area(a)
		if la == nil {
			continue
		}
		if la.MaxCount > 0 {
			d.all.learnedMax.WithLabelValues(d.module, d.device, a.String()).Set(float64(la.MaxCount))
		}
		d.all.avoided.WithLabelValues(d.module, d.device, a.String()).Set(float64(len(la.Avoid)))
	}
}

func (d *deviceMetrics) exception(code byte) {
	c := d.exceptions[code]
	if c == nil {
		c = d.all.exceptions.WithLabelValues(d.module, d.device, strconv.Itoa(int(code)))
		d.exceptions[code] = c
	}
	c.Inc()
}

func (d *deviceMetrics) failure(status uint32) {
	switch status {
	case StatusNoAnswer:
		d.noAnswer.Inc()
	case StatusNotConnected:
		d.notConnected.Inc()
	default:
		d.malformed.Inc()
	}
}
