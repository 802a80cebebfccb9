package generator

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/connectors/sampletest"
	"github.com/ferry-gateway/ferry/internal/conf"
)

func TestSample(t *testing.T) {
	sampletest.Check(t, "generator", "README.md")
}

func newGen(t *testing.T, interval time.Duration) *Generator {
	t.Helper()
	g := &Generator{Config: Config{
		Devices:  2,
		Interval: conf.Duration(interval),
		Tags: []TagConfig{
			{Name: "s", Signal: "sine"}, {Name: "c", Signal: "counter"},
			{Name: "w", Signal: "random_walk", Count: 3},
		},
	}}
	g.SetDefaults()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestConformance(t *testing.T) {
	conntest.Run(t, conntest.Features{Source: true}, conntest.Harness{
		New: func(t *testing.T) connectors.Connector { return newGen(t, 10*time.Millisecond) },
	})
}

func TestSignals(t *testing.T) {
	mk := func(kind string) *signal {
		return &signal{kind: kind, min: 10, max: 20, step: 1, period: 4, state: 15}
	}
	sine := mk("sine")
	if v := sine.next(1).Double(); math.Abs(v-20) > 1e-9 { // quarter period: the top
		t.Errorf("sine at T/4 = %v, want 20", v)
	}
	ramp := mk("ramp")
	if v := ramp.next(2).Double(); math.Abs(v-15) > 1e-9 {
		t.Errorf("ramp at T/2 = %v, want 15", v)
	}
	step := mk("step")
	if a, b := step.next(1).Double(), step.next(3).Double(); a != 10 || b != 20 {
		t.Errorf("step = %v then %v, want 10 then 20", a, b)
	}
	c := mk("counter")
	c.state = 10
	for want := int64(10); want <= 20; want++ {
		if v := c.next(0); v.Kind != bus.KindLong || v.Long() != want {
			t.Fatalf("counter = %v, want %d", v, want)
		}
	}
	if v := c.next(0).Long(); v != 10 {
		t.Errorf("counter did not wrap at max: %d", v)
	}
	w := mk("random_walk")
	w.rng = newRand()
	for range 1000 {
		v := w.next(0).Double()
		if v < 10 || v > 20 {
			t.Fatalf("random walk left [min,max]: %v", v)
		}
	}
}

func TestValidate(t *testing.T) {
	g := &Generator{Config: Config{Devices: -1, Tags: []TagConfig{{Name: "a", Signal: "square"}, {Name: "a", Min: 3, Max: 1}}}}
	g.SetDefaults()
	err := g.Validate()
	var p conf.Problems
	p.Nest("", err)
	paths := map[string]bool{}
	for _, e := range p {
		paths[e.(*conf.FieldError).Path] = true
	}
	for _, want := range []string{"devices", "tags[0].signal", "tags[1].name", "tags[1].max"} {
		if !paths[want] {
			t.Errorf("no problem reported at %s (got %v)", want, err)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	g := newGen(&testing.T{}, 0)
	g.Tags = []TagConfig{{Name: "t", Signal: "sine", Count: 500, Period: conf.Duration(time.Minute), Max: 100}}
	g.Devices = 2
	ps := bus.NewMemory(nil)
	defer ps.Close()
	env, _ := connectors.NewEnv(connectors.EnvConfig{Name: "gen", DataDir: b.TempDir(), Publisher: ps})
	msgs, _ := ps.Subscribe(b.Context(), "gen/out")
	if err := g.Start(b.Context(), env); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	n := 0
	for n < b.N {
		m := <-msgs
		var batch bus.Batch
		_ = new(bus.Decoder).DecodeMessage(m, &batch)
		n += len(batch.Records)
		m.Ack()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.StopTimer()
	go func() {
		for m := range msgs {
			m.Ack()
		}
	}()
	_ = g.Stop(b.Context())
	_ = env.Shutdown(b.Context())
}

// refusingSeq refuses reservations 2 and 3, as a lost lease does: Emit
// fails, run returns the error, and the Env runs it again.
type refusingSeq struct {
	mu    sync.Mutex
	calls int
	next  uint64
}

func (s *refusingSeq) Reserve(n int) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == 2 || s.calls == 3 {
		return 0, errors.New("injected: reservation refused")
	}
	first := s.next
	s.next += uint64(n)
	return first, nil
}

// TestRestartKeepsFailedBatch: a counter's values stay contiguous across
// the restarts of a failed emit: the batch that failed goes out first.
func TestRestartKeepsFailedBatch(t *testing.T) {
	g := &Generator{Config: Config{Devices: 1, Interval: conf.Duration(5 * time.Millisecond),
		Tags: []TagConfig{{Name: "c", Signal: "counter"}}}}
	g.SetDefaults()
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	r := conntest.NewRunner(t, g, connectors.EnvConfig{Seq: &refusingSeq{}})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	}()
	if err := g.Start(t.Context(), r.Env); err != nil {
		t.Fatal(err)
	}
	for want := int64(0); want < 10; want++ {
		b := r.Next(t, 10*time.Second)
		if v := b.Records[0].Value.Long(); v != want {
			t.Fatalf("counter %d, want %d: a batch was lost or repeated across a restart", v, want)
		}
	}
	if e := r.Env.State().Snapshot().LastError; !strings.Contains(e, "refused") {
		t.Errorf("last error %q: the restart was not exercised", e)
	}
}
