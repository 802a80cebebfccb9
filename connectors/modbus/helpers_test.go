package modbus

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	sim "github.com/ferry-gateway/ferry/sim/modbus"
)

// startSim starts a simulator on a free loopback port for the test.
func startSim(t testing.TB, cfg sim.Config) *sim.Server {
	t.Helper()
	if cfg.Tick == 0 {
		cfg.Tick = time.Hour // tests program values by hand
	}
	s, err := sim.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// mustDecode decodes, defaults and validates a connector section given as
// YAML; {addr} is replaced by addr.
func mustDecode(t testing.TB, addr, text string) *Modbus {
	t.Helper()
	m, errs := decodeText(t, "test.yaml", strings.ReplaceAll(text, "{addr}", addr))
	if len(errs) > 0 {
		t.Fatalf("config does not validate:\n%v", errs)
	}
	return m
}

// rig runs a connector on an in-memory bus and reads its batches.
type rig struct {
	*conntest.Runner
	m       *Modbus
	reg     *prometheus.Registry
	dataDir string
}

func newRig(t testing.TB, m *Modbus, dataDir string) *rig {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	reg := prometheus.NewRegistry()
	r := &rig{m: m, reg: reg, dataDir: dataDir, Runner: conntest.NewRunner(t, m, connectors.EnvConfig{
		Name: "mb", Type: "modbus", DataDir: dataDir, Metrics: connectors.NewMetrics(reg),
	})}
	if err := m.Start(context.Background(), r.Env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	return r
}

// start decodes text against the simulator's address and runs it.
func start(t testing.TB, s *sim.Server, text string) *rig {
	t.Helper()
	return newRig(t, mustDecode(t, s.Addr(), text), "")
}

func (r *rig) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = r.Stop(ctx)
}

// next returns the next batch, failing the test after within.
func (r *rig) next(t testing.TB, within time.Duration) *bus.Batch { return r.Next(t, within) }

// until reads batches until ok accepts one, failing the test after within.
func (r *rig) until(t testing.TB, within time.Duration, ok func(*bus.Batch) bool) *bus.Batch {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("no matching batch within %v (state %+v)", within, r.Env.State().Snapshot())
		}
		if b := r.next(t, left); ok(b) {
			return b
		}
	}
}

// dev returns the poll state of a device, for tests that drive cycles.
func (r *rig) dev(name string) *device { return (*r.m.devices.Load())[name] }

// poke makes a device poll now.
func (r *rig) poke(name string) { r.dev(name).requestPoll() }

// byTag indexes a batch's records by tag.
func byTag(b *bus.Batch) map[string]bus.Record {
	out := map[string]bus.Record{}
	for _, rec := range b.Records {
		out[rec.Tag] = rec
	}
	return out
}

func allGood(b *bus.Batch) bool {
	for _, r := range b.Records {
		if r.Quality != bus.Good {
			return false
		}
	}
	return len(b.Records) > 0
}

func allBad(b *bus.Batch) bool {
	for _, r := range b.Records {
		if r.Quality != bus.Bad {
			return false
		}
	}
	return len(b.Records) > 0
}

// metric returns the value of the series name whose labels include want.
func (r *rig) metric(t testing.TB, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			sum += value(m)
		}
	}
	return sum
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}
