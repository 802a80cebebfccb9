package sparkplug

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/connectors"
)

// metrics are the Sparkplug series of one module.
type metrics struct {
	messages *prometheus.CounterVec // by message type, sent (edge) or received (host)
	rebirths prometheus.Counter     // edge: rebirths answered; host: rebirth requests sent
	gaps     prometheus.Counter     // host: seq gaps and unknown aliases seen
	commands *prometheus.CounterVec // edge: DCMDs by result
	skipped  *prometheus.CounterVec // records or metrics not carried, by reason
}

func newMetrics(env *connectors.Env) *metrics {
	reg := env.Metrics.Reg
	name := env.Name
	vec := func(n, help string, labels ...string) *prometheus.CounterVec {
		return connectors.Collector(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: n, Help: help}, append([]string{"module"}, labels...)))
	}
	m := &metrics{
		messages: vec("ferry_sparkplug_messages_total", "Sparkplug messages sent (edge node) or received (host), by message type.", "type").MustCurryWith(prometheus.Labels{"module": name}),
		rebirths: vec("ferry_sparkplug_rebirths_total", "Edge node: full rebirths sent on a rebirth request. Host: rebirth requests sent.").WithLabelValues(name),
		gaps:     vec("ferry_sparkplug_seq_gaps_total", "Host: messages whose seq skipped one or whose alias was unknown, each answered with a rebirth request.").WithLabelValues(name),
		commands: vec("ferry_sparkplug_commands_total", "Edge node: DCMD metrics handed to the write-back path, by result (ok, refused, failed).", "result").MustCurryWith(prometheus.Labels{"module": name}),
		skipped:  vec("ferry_sparkplug_skipped_total", "Records (edge node) or metrics (host) that could not be carried, by reason.", "reason").MustCurryWith(prometheus.Labels{"module": name}),
	}
	return m
}
