// Package e2e holds end-to-end tests that run whole pipelines against the
// simulators and real brokers: store-and-forward across outages and crashes,
// and the demo. It has no code of its own.
package e2e
