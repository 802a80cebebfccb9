package lease

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are shared by every Elector of a registry, labelled by key
// ("module"), so that a reload's new Elector counts on in the same series.
type metrics struct {
	owner       *prometheus.GaugeVec
	acquired    *prometheus.CounterVec
	lost        *prometheus.CounterVec
	renewErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		owner: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_lease_owner",
			Help: "1 while this instance owns the source's lease and runs it, else 0.",
		}, []string{"module"}),
		acquired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_lease_acquired_total",
			Help: "Terms this instance started for the source (lease acquisitions).",
		}, []string{"module"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_lease_lost_total",
			Help: "Terms that ended, by reason: refused (another instance holds the lease), expired (no renewal succeeded in time; self-fenced), fenced (another term reserved sequence numbers), shutdown, released (work returned).",
		}, []string{"module", "reason"}),
		renewErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_lease_renew_errors_total",
			Help: "Lease renewals that could not reach the bus (each retried at the next heartbeat).",
		}, []string{"module"}),
	}
	var err error
	if m.owner, err = register(reg, m.owner); err != nil {
		return nil, err
	}
	if m.acquired, err = register(reg, m.acquired); err != nil {
		return nil, err
	}
	if m.lost, err = register(reg, m.lost); err != nil {
		return nil, err
	}
	if m.renewErrors, err = register(reg, m.renewErrors); err != nil {
		return nil, err
	}
	return m, nil
}

// init makes the key's series exist from the start, at 0.
func (m *metrics) init(key string) {
	m.owner.WithLabelValues(key).Set(0)
	m.acquired.WithLabelValues(key)
	m.renewErrors.WithLabelValues(key)
	for _, r := range reasons {
		m.lost.WithLabelValues(key, r)
	}
}

// register registers c on reg, or returns the collector already registered
// there under the same name: a second Elector on one registry (a reload)
// counts on in the same series. Unlike internal/promreg it returns an error
// instead of panicking, since New has one to return.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("lease: register metrics: %w", err)
	}
	return c, nil
}
