// Package generator is a source of synthetic signals, so that a pipeline
// runs, and can be benchmarked, before any device is attached.
package generator

import (
	"context"
	_ "embed"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

//go:embed sample.yaml
var sample []byte

func init() {
	connectors.Register(connectors.Info{
		Name:    "generator",
		Roles:   connectors.RoleSource,
		New:     func() connectors.Connector { return &Generator{} },
		Sample:  sample,
		Summary: "synthetic sine, ramp, random walk, counter and step signals",
	})
}

// Generator emits one batch per device every interval.
type Generator struct {
	Config `yaml:",inline"`

	signals []signal  // devices × expanded tags
	start   time.Time // the signals' time base, kept across restarts
	held    bus.Batch // a batch whose emit failed, emitted first by the next run
}

type signal struct {
	device, tag, unit string
	kind              string
	min, max, step    float64
	period            float64 // seconds
	phase             float64 // radians
	state             float64 // counter and random walk position
	rng               *rand.Rand
}

// Outputs implements connectors.Source.
func (g *Generator) Outputs() []string { return []string{connectors.DefaultOutput} }

// Start builds the signals and starts the emitting loop.
func (g *Generator) Start(ctx context.Context, env *connectors.Env) error {
	g.signals = g.signals[:0]
	for d := 1; d <= g.Devices; d++ {
		device := g.DevicePrefix + strconv.Itoa(d)
		for _, t := range g.Tags {
			for k := 1; k <= t.Count; k++ {
				name := t.Name
				if t.Count > 1 {
					name += strconv.Itoa(k)
				}
				s := signal{
					device: device, tag: name, unit: t.Unit, kind: t.Signal,
					min: t.Min, max: t.Max, step: t.Step, period: t.Period.D().Seconds(),
					phase: 2 * math.Pi * float64((d-1)*t.Count+k-1) / float64(g.Devices*t.Count),
					rng:   newRand(uint64(d), uint64(k)),
				}
				s.state = (s.min + s.max) / 2
				if s.kind == "counter" {
					s.state = s.min
				}
				g.signals = append(g.signals, s)
			}
		}
	}
	g.start = time.Now()
	g.held.Reset()
	env.Go("generate", g.run(env))
	return nil
}

// run is the emitting loop, written for Env.Go: a batch whose emit failed
// is kept and goes out first when the Env runs the loop again, and the
// signals continue from where they were (start and the signals' state live
// in g, not in one run).
func (g *Generator) run(env *connectors.Env) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if len(g.held.Records) > 0 {
			if err := env.Emit(ctx, &g.held); err != nil {
				return err
			}
			g.held.Reset()
		}
		var b bus.Batch
		b.Records = make([]bus.Record, 0, min(g.BatchSize, len(g.signals)))
		var tick *time.Ticker
		if g.Interval > 0 {
			tick = time.NewTicker(g.Interval.D())
			defer tick.Stop()
		}
		for {
			now := time.Now()
			ts := now.UnixNano()
			t := now.Sub(g.start).Seconds()
			for i := range g.signals {
				s := &g.signals[i]
				b.Records = append(b.Records, bus.Record{
					Device: s.device, Tag: s.tag, Unit: s.unit,
					Value: s.next(t), Quality: bus.Good, SourceTime: ts,
				})
				if len(b.Records) == g.BatchSize || i == len(g.signals)-1 {
					if err := env.Emit(ctx, &b); err != nil {
						// The rest of this cycle is not generated: the next
						// run starts a fresh cycle after the held batch.
						g.held.Records = append(g.held.Records[:0], b.Records...)
						return err
					}
					b.Reset()
				}
			}
			if tick == nil {
				if ctx.Err() != nil {
					return nil
				}
				continue
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
	}
}

// next returns the signal's value at t seconds since start.
func (s *signal) next(t float64) bus.Value {
	span := s.max - s.min
	switch s.kind {
	case "sine":
		return bus.Double(s.min + span/2*(1+math.Sin(2*math.Pi*t/s.period+s.phase)))
	case "ramp":
		frac := math.Mod(t/s.period+s.phase/(2*math.Pi), 1)
		return bus.Double(s.min + span*frac)
	case "random_walk":
		s.state += (s.rng.Float64()*2 - 1) * s.step
		s.state = math.Max(s.min, math.Min(s.max, s.state))
		return bus.Double(s.state)
	case "counter":
		v := s.state
		s.state += s.step
		if s.max > s.min && s.state > s.max {
			s.state = s.min
		}
		return bus.Long(int64(v))
	case "step":
		if math.Mod(t/s.period+s.phase/(2*math.Pi), 1) < 0.5 {
			return bus.Double(s.min)
		}
		return bus.Double(s.max)
	}
	return bus.Null()
}

// newRand seeds a generator per signal, so runs are reproducible and
// signals share no lock.
func newRand(seed ...uint64) *rand.Rand {
	var a, b uint64 = 1, 2
	if len(seed) == 2 {
		a, b = seed[0], seed[1]
	}
	return rand.New(rand.NewPCG(a, b))
}

// Stop has nothing to release: the emitting loop ends with the Env.
func (g *Generator) Stop(context.Context) error { return nil }

var _ connectors.Source = (*Generator)(nil)
