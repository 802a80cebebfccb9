// Package promreg registers Prometheus collectors idempotently: a module
// restarted by a reload registers its series again and gets the existing
// ones. A leaf package, shared by the connectors and the spool.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector registers c on reg, or returns the collector already registered
// under the same description, so that a connector restarted by a reload can
// register its series again.
func Collector[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("metric registration: " + err.Error())
	}
	return c
}
