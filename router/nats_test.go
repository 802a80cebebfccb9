package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/natstest"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

func natsBus(url, instance string) string {
	return fmt.Sprintf(`
bus:
  type: nats
  url: %s
  instance: %s
  lease: 1s
  heartbeat: 100ms
`, url, instance)
}

// TestPipelineOnNATS runs a source, the router and a sink over a real NATS
// JetStream bus: records arrive in order with no seq skipped, and the
// source runs as the owner of its lease.
func TestPipelineOnNATS(t *testing.T) {
	srv := natstest.Start(t)
	c := load(t, natsBus(srv.URL(), "one")+`
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  out: {type: testcapture, fail: 2}
routes:
  - {from: gen, to: out}
`)
	p := start(t, c)
	defer stop(t, p)
	cap := captures["out"]
	check := contiguous(t)
	for range 50 {
		check(recv(t, cap))
	}
	st := p.Status()
	if st.Bus != "nats" || st.Instance != "one" {
		t.Fatalf("status bus %q instance %q", st.Bus, st.Instance)
	}
	gen := st.Modules[0]
	if gen.Lease == nil || !gen.Lease.Mine || gen.Lease.Owner != "one" || gen.Phase != connectors.PhaseUp {
		t.Fatalf("gen: phase %s, lease %+v", gen.Phase, gen.Lease)
	}
	if ready, not := p.Ready(); !ready {
		t.Fatalf("not ready: %v", not)
	}
	go func() {
		for range cap.got {
		}
	}()
}

// TestJetStreamStoreAndForward queues a sink's batches in its JetStream
// stream while the sink fails, shows them on the status, and delivers all
// of them once the sink recovers.
func TestJetStreamStoreAndForward(t *testing.T) {
	srv := natstest.Start(t)
	c := load(t, natsBus(srv.URL(), "one")+`
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  out:
    type: testcapture
    fail: 4
    store_and_forward: {backend: jetstream, quota: 64MiB, max_age: 1h, window: 4}
routes:
  - {from: gen, to: out}
`)
	p := start(t, c)
	defer stop(t, p)
	var s *SpoolStatus
	waitfor.Until(t, 30*time.Second, func() bool {
		s = p.Status().Modules[1].Spool
		return s != nil && s.Backend == BackendJetStream && s.Batches > 3
	}, func() string { return fmt.Sprintf("no batches queued in the stream while the sink fails: %+v", s) })
	if n, err := testutil.GatherAndCount(p.Registry(), "ferry_spool_batches", "ferry_spool_bytes", "ferry_spool_oldest_seconds"); err != nil || n != 3 {
		t.Fatalf("JetStream queue gauges: %d series, %v", n, err)
	}
	cap := captures["out"]
	check := contiguous(t)
	for n := 0; n < 2000; {
		n += check(recv(t, cap))
	}
	go func() {
		for range cap.got {
		}
	}()
}

// BenchmarkPipelineBus compares the same pipeline (generator → router →
// discarding sink) on the in-process bus and on NATS JetStream (a server in
// this process, one replica, file storage).
//
//	go test ./router -run '^$' -bench PipelineBus -benchtime 3s
func BenchmarkPipelineBus(b *testing.B) {
	const pipe = `
connectors:
  gen:
    type: generator
    devices: 10
    batch_size: 1000
    interval: 0s
    tags: [{name: line1/t, signal: sine, count: 100}]
  out: {type: testcapture}
routes:
  - {from: gen, to: out}
`
	for _, kind := range []string{"memory", "nats"} {
		b.Run(kind, func(b *testing.B) {
			text := pipe
			if kind == "nats" {
				text = natsBus(natstest.Start(b).URL(), "bench") + pipe
			}
			benchPipeline(b, text)
		})
	}
}

// picky fails Start on one instance only: a source whose port is taken on
// one box, or a sink whose certificate is missing there.
type picky struct {
	FailOn string `yaml:"fail_on"`
	got    chan bus.Batch
}

func (c *picky) Validate() error   { return nil }
func (c *picky) Outputs() []string { return []string{"out"} }
func (c *picky) Start(_ context.Context, e *connectors.Env) error {
	if e.Instance == c.FailOn {
		return errors.New("not on this box")
	}
	pickyStarted.Store(e.Instance, c)
	return nil
}
func (c *picky) Stop(context.Context) error { return nil }
func (c *picky) Write(ctx context.Context, b *bus.Batch) error {
	select {
	case c.got <- bus.Batch{Records: append([]bus.Record(nil), b.Records...)}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var pickyStarted sync.Map // instance → *picky

func init() {
	connectors.Register(connectors.Info{Name: "testpickysource", Roles: connectors.RoleSource,
		New: func() connectors.Connector { return &picky{} }})
	connectors.Register(connectors.Info{Name: "testpickysink", Roles: connectors.RoleSink,
		New: func() connectors.Connector { return &picky{got: make(chan bus.Batch, 1024)} }})
}

// A source that cannot start on the instance that won its lease gives the
// lease up, and the instance where it can start takes the source.
func TestFailedSourceGivesLeaseUp(t *testing.T) {
	srv := natstest.Start(t)
	cfg := `
connectors:
  src: {type: testpickysource, fail_on: one}
  out: {type: testcapture}
routes:
  - {from: src, to: out}
`
	a := start(t, load(t, natsBus(srv.URL(), "one")+cfg))
	defer stop(t, a)
	waitfor.Until(t, 10*time.Second, func() bool { return a.Status().Modules[0].Phase == connectors.PhaseRetrying },
		func() string { return fmt.Sprintf("src on one: %+v", a.Status().Modules[0]) })
	b := start(t, load(t, natsBus(srv.URL(), "two")+cfg))
	defer stop(t, b)
	var m ModuleStatus
	waitfor.Until(t, 20*time.Second, func() bool {
		m = b.Status().Modules[0]
		return m.Lease != nil && m.Lease.Mine && m.Phase == connectors.PhaseUp
	}, func() string {
		return fmt.Sprintf("src on two never took over from the instance where it cannot start: %+v %+v", m.Phase, m.Lease)
	})
}

// A JetStream-queued sink that cannot start on one instance leaves the
// shared queue to the instance where it runs: nothing is discarded.
func TestFailedSinkLeavesSharedQueue(t *testing.T) {
	srv := natstest.Start(t)
	cfg := `
connectors:
  gen:
    type: generator
    interval: 1ms
    tags: [{name: t, signal: counter}]
  out:
    type: testpickysink
    fail_on: one
    store_and_forward: {backend: jetstream, quota: 64MiB}
routes:
  - {from: gen, to: out}
`
	a := start(t, load(t, natsBus(srv.URL(), "one")+cfg))
	defer stop(t, a)
	b := start(t, load(t, natsBus(srv.URL(), "two")+cfg))
	defer stop(t, b)
	v, ok := pickyStarted.Load("two")
	if !ok {
		t.Fatal("the sink did not start on two")
	}
	got := v.(*picky).got
	check := contiguous(t)
	for n := 0; n < 3000; {
		select {
		case b := <-got:
			n += check(b)
		case <-time.After(20 * time.Second):
			t.Fatalf("only %d records reached the sink on two", n)
		}
	}
	go func() {
		for range got {
		}
	}()
}
