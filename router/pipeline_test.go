package router

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router/outlet"
)

func TestMain(m *testing.M) {
	// Tests wait on restarts; a second per try would only slow them.
	connectors.RestartBackoff = connectors.Backoff{Min: 20 * time.Millisecond, Max: 500 * time.Millisecond}
	os.Exit(m.Run())
}

// capture is a sink for tests of the pipeline itself: it hands every batch
// to the test through a channel.
type capture struct {
	Fail  int32 `yaml:"fail"` // fail this many writes first
	got   chan bus.Batch
	calls atomic.Int32
}

var captures = map[string]*capture{}

func (c *capture) Validate() error                                  { return nil }
func (c *capture) Start(_ context.Context, e *connectors.Env) error { captures[e.Name] = c; return nil }
func (c *capture) Stop(context.Context) error                       { return nil }
func (c *capture) Write(ctx context.Context, b *bus.Batch) error {
	if c.calls.Add(1) <= c.Fail {
		return errors.New("far side unavailable")
	}
	cp := bus.Batch{Records: append([]bus.Record(nil), b.Records...)}
	select {
	case c.got <- cp:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flaky fails Start when told to, and panics in its loop once.
type flaky struct {
	FailStart bool `yaml:"fail_start"`
	Panic     bool `yaml:"panic"`
	runs      atomic.Int32
}

func (f *flaky) Validate() error   { return nil }
func (f *flaky) Outputs() []string { return nil }
func (f *flaky) Start(_ context.Context, e *connectors.Env) error {
	if f.FailStart {
		return errors.New("port in use")
	}
	e.Go("loop", func(ctx context.Context) error {
		if f.runs.Add(1) == 1 && f.Panic {
			panic("device driver bug")
		}
		e.Up()
		<-ctx.Done()
		return nil
	})
	return nil
}
func (f *flaky) Stop(context.Context) error { return nil }

func init() {
	connectors.Register(connectors.Info{Name: "testcapture", Roles: connectors.RoleSink,
		New: func() connectors.Connector { return &capture{got: make(chan bus.Batch, 1024)} }})
	connectors.Register(connectors.Info{Name: "testflaky", Roles: connectors.RoleSource,
		New: func() connectors.Connector { return &flaky{} }})
}

func load(t testing.TB, text string) *Config {
	t.Helper()
	c, err := Load("test.yaml", []byte(text), conf.Resolver{})
	if err != nil {
		t.Fatalf("load:\n%v", err)
	}
	c.DataDir = t.TempDir()
	return c
}

func start(t testing.TB, c *Config) *Pipeline {
	t.Helper()
	p, err := New(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	return p
}

func stop(t testing.TB, p *Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// contiguous returns a check that the records of the batches it is given,
// in turn, carry consecutive sequence numbers; it returns how many it saw.
func contiguous(t *testing.T) func(bus.Batch) int {
	var last uint64
	return func(b bus.Batch) int {
		t.Helper()
		for _, r := range b.Records {
			if last != 0 && r.Seq != last+1 {
				t.Fatalf("seq jumped from %d to %d: records lost", last, r.Seq)
			}
			last = r.Seq
		}
		return len(b.Records)
	}
}

// drainStop stops p while something keeps reading got, so that a sink
// still delivering does not hold the stop up.
func drainStop(t testing.TB, p *Pipeline, got chan bus.Batch) {
	t.Helper()
	go func() {
		for range got {
		}
	}()
	stop(t, p)
}

func recv(t *testing.T, c *capture) bus.Batch {
	t.Helper()
	select {
	case b := <-c.got:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch reached the sink")
	}
	return bus.Batch{}
}

func TestPipelineRoutesTransformsAndFansOut(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    devices: 2
    interval: 5ms
    tags:
      - {name: line1/temp, signal: counter, unit: C}
      - {name: line2/temp, signal: counter}
  all: {type: testcapture}
  hot: {type: testcapture}
routes:
  - name: everything
    from: gen/out
    to: all
  - name: line1-scaled
    from: gen
    tags: "line1/*"
    where: value >= 2 && device == "device1"
    transform:
      - {scale: 10, offset: 1}
      - unit: dC
      - rename: "{device}.{tag}"
    to: [hot]
    priority: 5
`)
	p := start(t, c)
	all, hot := captures["all"], captures["hot"]

	b := recv(t, all)
	if len(b.Records) != 4 {
		t.Fatalf("everything route: %d records, want 4 (2 devices × 2 tags)", len(b.Records))
	}
	seen := 0
	for seen < 3 {
		b = recv(t, hot)
		for _, r := range b.Records {
			v, _ := r.Value.Float()
			if r.Tag != "device1.line1/temp" || r.Device != "device1" || r.Unit != "dC" || int64(v-1)%10 != 0 || v < 21 {
				t.Fatalf("transformed record wrong: %+v", r)
			}
			if r.Source != "gen" || r.Seq == 0 {
				t.Fatalf("source or seq lost: %+v", r)
			}
			seen++
		}
	}
	stop(t, p)

	st := p.Status()
	if len(st.Modules) != 3 || len(st.Routes) != 2 {
		t.Fatalf("status: %+v", st)
	}
	r := st.Routes[1]
	if r.Matched == 0 || r.Filtered == 0 || r.Forwarded == 0 || r.Matched != r.Filtered+r.Forwarded {
		t.Fatalf("route counters inconsistent: %+v", r)
	}
	// Graceful stop drains: everything the source published reached the sink.
	var gen, sink connectors.Snapshot
	for _, m := range st.Modules {
		switch m.Name {
		case "gen":
			gen = m.Snapshot
		case "all":
			sink = m.Snapshot
		}
	}
	if gen.Out == 0 || sink.In != gen.Out || sink.Out != sink.In {
		t.Fatalf("records lost across stop: gen out %d, sink in %d out %d", gen.Out, sink.In, sink.Out)
	}
	metrics, err := testutil.GatherAndCount(p.Registry(), "ferry_records_in_total", "ferry_records_out_total", "ferry_route_records_total", "ferry_connector_up", "ferry_connector_errors_total")
	if err != nil || metrics < 5 {
		t.Fatalf("metrics: %d series, %v", metrics, err)
	}
}

func TestFailingConnectorDoesNotStopOthers(t *testing.T) {
	c := load(t, `
connectors:
  broken: {type: testflaky, fail_start: true}
  buggy: {type: testflaky, panic: true}
  gen:
    type: generator
    interval: 5ms
    tags: [{name: t}]
  out: {type: testcapture}
routes:
  - {from: gen, to: out}
`)
	p := start(t, c)
	defer stop(t, p)
	recv(t, captures["out"])
	ready, waiting := p.Ready()
	if ready || len(waiting) != 1 || waiting[0] != "broken" {
		t.Fatalf("Ready() = %v %v, want only broken waiting", ready, waiting)
	}
	buggy := c.Module("buggy").Connector.(*flaky)
	deadline := time.Now().Add(10 * time.Second)
	for buggy.runs.Load() < 2 && time.Now().Before(deadline) {
		recv(t, captures["out"]) // time passes as data flows; no sleeping
	}
	if buggy.runs.Load() < 2 {
		t.Fatal("panicking loop was not restarted")
	}
	var s connectors.Snapshot
	for _, m := range p.Status().Modules {
		if m.Name == "broken" {
			s = m.Snapshot
		}
	}
	if s.Phase != connectors.PhaseRetrying || !strings.Contains(s.LastError, "port in use") || s.Attempt < 1 || s.NextTry.IsZero() {
		t.Fatalf("broken connector state %+v, want retrying with the start error, an attempt and a next try", s)
	}
}

func TestSinkErrorsAndSlownessLoseNothing(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  out: {type: testcapture, fail: 3}
routes:
  - {from: gen, to: out}
`)
	p := start(t, c)
	cap := captures["out"]
	// The first writes fail and are retried; the sink is also read slowly, so
	// the source blocks behind it. Either way no sequence number may be
	// skipped.
	check := contiguous(t)
	for range 50 {
		check(recv(t, cap))
	}
	if cap.calls.Load() < 53 {
		t.Fatalf("%d writes for 50 batches after 3 failures", cap.calls.Load())
	}
	if s := p.Status().Modules[1]; s.Errors < 3 {
		t.Fatalf("sink errors not counted: %+v", s)
	}
	drainStop(t, p, cap.got)
}

// BenchmarkPipeline measures generator → router (where + two transforms) →
// a sink that discards, end to end on the in-process bus.
func BenchmarkPipeline(b *testing.B) {
	benchPipeline(b, `
connectors:
  gen:
    type: generator
    devices: 10
    batch_size: 1000
    interval: 0s
    tags: [{name: line1/t, signal: sine, count: 100}]
  out: {type: testcapture}
routes:
  - from: gen
    where: quality == "GOOD" && value > 10
    transform:
      - {scale: 1.8, offset: 32}
      - unit: F
    to: out
`)
}

// benchPipeline runs a config whose sink is the testcapture "out" and
// reports the records/s it receives.
func benchPipeline(b *testing.B, text string) {
	p := start(b, load(b, text))
	cap := captures["out"]
	b.ResetTimer()
	n := 0
	for n < b.N {
		n += len((<-cap.got).Records)
	}
	b.StopTimer()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	drainStop(b, p, cap.got)
}

// BenchmarkEngine measures the routing hot path alone: a where and two
// transforms over a decoded batch of 1000 records (allocs/op is per batch).
func BenchmarkEngine(b *testing.B) {
	c := load(b, `
connectors:
  gen: {type: generator, tags: [{name: t}]}
  out: {type: testcapture}
routes:
  - from: gen
    where: quality == "GOOD" && value > 10
    transform:
      - {scale: 1.8, offset: 32}
      - deadband: 0.01
    to: out
`)
	e := NewEngine(c.CompiledRoutes(), c.sourceTopics(), func(string) outlet.Queue { return nil }, nil, nil)
	var in bus.Batch
	for i := range 1000 {
		in.Records = append(in.Records, bus.Record{Source: "gen", Device: "d", Tag: fmt.Sprintf("t%d", i%100),
			Value: bus.Double(float64(i)), Quality: bus.Good, SourceTime: 1, Seq: uint64(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Route("gen/out", &in)
		for _, l := range e.lanes {
			l.batch.Reset()
		}
	}
	b.ReportMetric(float64(b.N*len(in.Records))/b.Elapsed().Seconds(), "records/s")
}

// A sink whose far side never comes back must not hang shutdown.
func TestStopIsBoundedWhenASinkIsStuck(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t}]
  out: {type: testcapture, fail: 1000000}
routes:
  - {from: gen, to: out}
`)
	p := start(t, c)
	// Wait until the sink is failing, so batches are stuck in flight.
	deadline := time.Now().Add(10 * time.Second)
	for captures["out"].calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("sink never called")
		}
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Stop(ctx) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return although its context ended")
	}
}

// stuck is a sink whose Write never returns until the sink is stopped: it
// ignores its context, as a driver blocked in a syscall would.
type stuck struct {
	release chan struct{}
	once    sync.Once
	calls   atomic.Int32
}

func (s *stuck) Validate() error                              { return nil }
func (s *stuck) Start(context.Context, *connectors.Env) error { return nil }
func (s *stuck) Stop(context.Context) error                   { s.once.Do(func() { close(s.release) }); return nil }
func (s *stuck) Write(_ context.Context, _ *bus.Batch) error {
	s.calls.Add(1)
	<-s.release
	return errors.New("stopped")
}

func init() {
	connectors.Register(connectors.Info{Name: "teststuck", Roles: connectors.RoleSink,
		New: func() connectors.Connector { return &stuck{release: make(chan struct{})} }})
}

// One sink that cannot deliver (refusing, or stuck in Write) holds back
// nothing but itself: the healthy sink gets every record, in order, while
// the refusing sink's bounded buffer drops its oldest batches, counted and
// told as events.
func TestOneStuckSinkStallsNothingElse(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  gen2:
    type: generator
    interval: 1ms
    tags: [{name: u, signal: counter}]
  out: {type: testcapture}
  refusing:
    type: testcapture
    fail: 1000000
    buffer: {max_bytes: 4KiB}
  wedged: {type: teststuck}
routes:
  - {from: [gen, gen2], to: [out, refusing, wedged]}
`)
	p := start(t, c)
	out := captures["out"]
	checks := map[string]func(bus.Batch) int{"gen": contiguous(t), "gen2": contiguous(t)}
	n := 0
	for n < 2000 {
		b := recv(t, out)
		byS := map[string]*bus.Batch{}
		for _, r := range b.Records {
			if byS[r.Source] == nil {
				byS[r.Source] = &bus.Batch{}
			}
			byS[r.Source].Records = append(byS[r.Source].Records, r)
		}
		for s, sb := range byS {
			n += checks[s](*sb)
		}
	}
	var refusing, wedged ModuleStatus
	waitfor.Until(t, 10*time.Second, func() bool {
		for _, m := range p.Status().Modules {
			switch m.Name {
			case "refusing":
				refusing = m
			case "wedged":
				wedged = m
			}
		}
		// The refusing sink's small buffer drops; the wedged sink's holds
		// what came since its Write got stuck.
		return refusing.Buffer != nil && refusing.Buffer.Dropped[outlet.DropFull] > 0 &&
			wedged.Buffer != nil && wedged.Buffer.InFlight == 1 && wedged.Buffer.Records > 100
	}, func() string { return fmt.Sprintf("buffers: refusing %+v, wedged %+v", refusing.Buffer, wedged.Buffer) })
	if refusing.Phase != connectors.PhaseDown || !strings.Contains(refusing.LastError, "far side unavailable") {
		t.Fatalf("refusing sink: %+v", refusing.Snapshot)
	}
	if got := testutil.ToFloat64(p.drops.WithLabelValues("refusing", outlet.DropFull)); got == 0 {
		t.Fatal("ferry_outlet_dropped_records_total not counted")
	}
	var sawDrop, sawDown bool
	for _, e := range p.Events(0) {
		sawDrop = sawDrop || e.Module == "refusing" && e.Kind == connectors.EventDrop
		sawDown = sawDown || e.Module == "refusing" && e.Kind == connectors.EventState && e.To == connectors.PhaseDown && strings.Contains(e.Error, "far side unavailable")
	}
	if !sawDrop || !sawDown {
		t.Fatalf("events lack the drop (%v) or the down with its cause (%v): %+v", sawDrop, sawDown, p.Events(0))
	}
	drainStop(t, p, out.got)
}

// A module whose Start fails comes up by itself once the cause is gone,
// and what was routed to it meanwhile waits in its outlet.
func TestFailedStartIsRetried(t *testing.T) {
	c := load(t, `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  out: {type: testpicky2}
routes:
  - {from: gen, to: out}
`)
	picky2Fail.Store(3)
	p := start(t, c)
	defer stop(t, p)
	waitfor.Until(t, 10*time.Second, func() bool { return statusOf(p, "out").Phase == connectors.PhaseUp },
		func() string { return fmt.Sprintf("out never came up: %+v", statusOf(p, "out")) })
	var retrying, up bool
	for _, e := range p.Events(0) {
		if e.Module == "out" && e.To == connectors.PhaseRetrying && strings.Contains(e.Error, "address already in use") {
			retrying = true
		}
		if e.Module == "out" && e.To == connectors.PhaseUp && retrying {
			up = true
		}
	}
	if !retrying || !up {
		t.Fatalf("events do not tell retrying (with its cause) then up: %+v", p.Events(0))
	}
	// Everything from the first record on arrives: it waited in the outlet.
	got := picky2Got
	check := contiguous(t)
	first := true
	for n := 0; n < 500; {
		b := <-got
		if first && b.Records[0].Seq != 0 {
			t.Fatalf("first record delivered has seq %d: what waited in the outlet was lost", b.Records[0].Seq)
		}
		first = false
		n += check(b)
	}
	go func() {
		for range got {
		}
	}()
}

var (
	picky2Fail atomic.Int32
	picky2Got  = make(chan bus.Batch, 1<<16)
)

// picky2 fails its first starts as a port that is taken would.
type picky2 struct{}

func (picky2) Validate() error { return nil }
func (picky2) Start(context.Context, *connectors.Env) error {
	if picky2Fail.Add(-1) >= 0 {
		return errors.New("listen tcp 127.0.0.1:1883: bind: address already in use")
	}
	return nil
}
func (picky2) Stop(context.Context) error { return nil }
func (picky2) Write(_ context.Context, b *bus.Batch) error {
	picky2Got <- bus.Batch{Records: append([]bus.Record(nil), b.Records...)}
	return nil
}

func init() {
	connectors.Register(connectors.Info{Name: "testpicky2", Roles: connectors.RoleSink,
		New: func() connectors.Connector { return picky2{} }})
}
