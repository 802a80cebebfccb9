package connectors

// Diagnoser is a connector that shows more than its state on the status
// page: per-device counters, latencies, learned limits. Diagnostics is
// called from the status handler's goroutine, concurrently with the
// connector's own, and returns a value that encodes to JSON.
type Diagnoser interface {
	Diagnostics() any
}
