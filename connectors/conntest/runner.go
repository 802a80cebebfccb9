package conntest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
)

// Runner runs one connector on an in-memory bus, the way the pipeline
// does, and reads what it emits: the suite's rig, and the connectors' own
// tests use it.
type Runner struct {
	Env  *connectors.Env
	Bus  bus.PubSub
	Msgs <-chan *message.Message // the first output's batches; nil for a sink

	c    connectors.Connector
	dec  bus.Decoder
	stop sync.Once
	errs error
}

// NewRunner builds the Env for c from ec (Name defaults to "dut", DataDir
// to a temporary directory; Publisher and Outputs come from the connector)
// and subscribes to the connector's first output before anything starts,
// because the memory bus drops what nobody listens to. It does not start c.
func NewRunner(t testing.TB, c connectors.Connector, ec connectors.EnvConfig) *Runner {
	t.Helper()
	// The in-process bus, hidden behind an interface of its own so the
	// Env encodes what it emits rather than lending it (bus.InProcess):
	// every connector's test then checks its batches survive the encoding
	// a durable or NATS bus applies.
	r := &Runner{c: c, Bus: struct{ bus.PubSub }{bus.NewMemory(nil)}}
	if ec.Name == "" {
		ec.Name = "dut"
	}
	if ec.DataDir == "" {
		ec.DataDir = t.TempDir()
	}
	if ec.Retry.Min == 0 {
		// Tests wait on restarts: a second per try would only slow them.
		ec.Retry = connectors.Backoff{Min: 20 * time.Millisecond, Max: time.Second}
	}
	if s, ok := c.(connectors.Source); ok {
		ec.Outputs = s.Outputs()
	}
	ec.Publisher = r.Bus
	env, err := connectors.NewEnv(ec)
	if err != nil {
		t.Fatal(err)
	}
	r.Env = env
	if len(ec.Outputs) > 0 {
		msgs, err := r.Bus.Subscribe(context.Background(), connectors.Topic(ec.Name, ec.Outputs[0]))
		if err != nil {
			t.Fatal(err)
		}
		r.Msgs = msgs
	}
	return r
}

// TryNext returns the next batch, decoded and acknowledged, or nil when
// none came within.
func (r *Runner) TryNext(t testing.TB, within time.Duration) *bus.Batch {
	t.Helper()
	if r.Msgs == nil {
		t.Fatal("connector declares no outputs")
	}
	tm := time.NewTimer(within)
	defer tm.Stop()
	select {
	case m := <-r.Msgs:
		var b bus.Batch
		if err := r.dec.DecodeMessage(m, &b); err != nil {
			t.Fatalf("emitted batch does not decode: %v", err)
		}
		m.Ack()
		return &b
	case <-tm.C:
		return nil
	}
}

// Next is TryNext failing the test when no batch came.
func (r *Runner) Next(t testing.TB, within time.Duration) *bus.Batch {
	t.Helper()
	b := r.TryNext(t, within)
	if b == nil {
		t.Fatalf("no batch within %v (state %+v)", within, r.Env.State().Snapshot())
	}
	return b
}

// Stop stops the connector and its goroutines and closes the bus, once;
// it returns what Stop and the Env's shutdown reported. Stop must return
// even while a source is blocked publishing, so the subscription is
// drained meanwhile.
func (r *Runner) Stop(ctx context.Context) error {
	r.stop.Do(func() {
		done := make(chan struct{})
		if r.Msgs != nil {
			go func() {
				for {
					select {
					case m := <-r.Msgs:
						if m != nil {
							m.Ack()
						}
					case <-done:
						return
					}
				}
			}()
		}
		var errs []error
		if err := r.c.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("Stop: %w", err))
		}
		if err := r.Env.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("goroutines left running: %w", err))
		}
		close(done)
		_ = r.Bus.Close()
		r.errs = errors.Join(errs...)
	})
	return r.errs
}
