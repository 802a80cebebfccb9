package modbus

import (
	"errors"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// latSamples is how many of a device's latest request latencies the
// status keeps for its p50 and p99: enough for a stable p99, small enough
// to sort on every status request.
const latSamples = 512

// diag is one device's diagnostics for the status page. The poll loop and
// write-back update it with atomics; Diagnostics reads it from another
// goroutine.
type diag struct {
	requests, responses, timeouts, failures atomic.Uint64
	exceptions                              [256]atomic.Uint64
	lat                                     [latSamples]atomic.Int64 // ns, a ring
	latN                                    atomic.Uint64
	learned                                 atomic.Pointer[[]string]
	groups                                  atomic.Pointer[[]PollGroupDiagnostics]
	writes, notKept                         atomic.Uint64
}

// observe records one exchange that took took and ended in err, and
// reports whether the device answered (with data or an exception).
func (g *diag) observe(took time.Duration, err error) (answered bool) {
	g.requests.Add(1)
	if err == nil {
		g.responses.Add(1)
		g.latency(took)
		return true
	}
	var ee *ExceptionError
	switch {
	case errors.As(err, &ee):
		g.responses.Add(1) // an exception is an answer
		g.exceptions[ee.Code].Add(1)
		g.latency(took)
		return true
	case errors.Is(err, ErrNoAnswer):
		g.timeouts.Add(1)
	case errors.Is(err, ErrClosed):
	default:
		g.failures.Add(1)
	}
	return false
}

func (g *diag) latency(d time.Duration) {
	i := g.latN.Add(1) - 1
	g.lat[i%latSamples].Store(int64(d))
}

// DeviceDiagnostics is one device as /api/status shows it.
type DeviceDiagnostics struct {
	Endpoint string `json:"endpoint"`
	Unit     int    `json:"unit"`
	// Requests sent; Responses are answers (data or exception).
	Requests  uint64 `json:"requests"`
	Responses uint64 `json:"responses"`
	// Exceptions by code, as "2 (illegal data address)".
	Exceptions map[string]uint64 `json:"exceptions,omitempty"`
	// Timeouts are requests without an answer in time; Failures other
	// exchanges that failed (no connection, malformed answer).
	Timeouts uint64 `json:"timeouts"`
	Failures uint64 `json:"failures"`
	// LatencyP50 and LatencyP99 (milliseconds) are over the latest answers
	// (at most 512).
	LatencyP50 float64 `json:"latency_p50_ms"`
	LatencyP99 float64 `json:"latency_p99_ms"`
	Samples    int     `json:"latency_samples"`
	// Learned are the limits learned from the device's exceptions.
	Learned []string `json:"learned,omitempty"`
	// Writes are write-back requests; NotKept those the device confirmed
	// but did not keep (verify_writes).
	Writes  uint64 `json:"writes"`
	NotKept uint64 `json:"writes_not_kept,omitempty"`
	// PollGroups are the device's poll intervals and reads per cycle.
	PollGroups []PollGroupDiagnostics `json:"poll_groups"`
}

// PollGroupDiagnostics is one poll group of a device.
type PollGroupDiagnostics struct {
	Interval string `json:"interval"`
	Tags     int    `json:"tags"`
	Requests int    `json:"requests"`
}

// Diagnostics implements connectors.Diagnoser: per device, the request,
// answer, exception and timeout counts, latency percentiles and learned
// limits.
func (m *Modbus) Diagnostics() any {
	devs := m.devices.Load()
	if devs == nil {
		return nil
	}
	out := make(map[string]DeviceDiagnostics, len(*devs))
	for name, d := range *devs {
		g := d.diag
		dd := DeviceDiagnostics{
			Endpoint: d.spec.endpoint.String(), Unit: int(d.spec.unit),
			Requests: g.requests.Load(), Responses: g.responses.Load(),
			Timeouts: g.timeouts.Load(), Failures: g.failures.Load(),
			Writes: g.writes.Load(), NotKept: g.notKept.Load(),
		}
		for c := range g.exceptions {
			if n := g.exceptions[c].Load(); n > 0 {
				if dd.Exceptions == nil {
					dd.Exceptions = map[string]uint64{}
				}
				dd.Exceptions[strconv.Itoa(c)+" ("+ExceptionName(byte(c))+")"] = n
			}
		}
		n := int(min(g.latN.Load(), latSamples))
		if n > 0 {
			s := make([]int64, n)
			for i := range s {
				s[i] = g.lat[i].Load()
			}
			slices.Sort(s)
			dd.LatencyP50 = float64(s[(n-1)*50/100]) / 1e6
			dd.LatencyP99 = float64(s[(n-1)*99/100]) / 1e6
			dd.Samples = n
		}
		if l := g.learned.Load(); l != nil {
			dd.Learned = *l
		}
		if gs := g.groups.Load(); gs != nil {
			dd.PollGroups = *gs
		}
		out[name] = dd
	}
	return out
}
