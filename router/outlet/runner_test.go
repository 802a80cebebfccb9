package outlet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// linkSink refuses writes until its link is up; then it takes them.
type linkSink struct {
	up  atomic.Bool
	got chan *bus.Batch
	n   atomic.Int32
}

func (s *linkSink) Validate() error                              { return nil }
func (s *linkSink) Start(context.Context, *connectors.Env) error { return nil }
func (s *linkSink) Stop(context.Context) error                   { return nil }
func (s *linkSink) Write(_ context.Context, b *bus.Batch) error {
	s.n.Add(1)
	if !s.up.Load() {
		return errors.New("link down")
	}
	s.got <- &bus.Batch{Records: append([]bus.Record(nil), b.Records...)} // a sink keeps nothing of b
	return nil
}

// A link that comes back wakes the sink's retry at once: with a back-off of
// an hour, the batch still arrives as soon as the sink reports up.
func TestRetryWakesWhenTheLinkIsBack(t *testing.T) {
	saved := RetryBackoff
	RetryBackoff = connectors.Backoff{Min: time.Hour, Max: time.Hour}
	defer func() { RetryBackoff = saved }()

	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "cloud", Sink: true})
	if err != nil {
		t.Fatal(err)
	}
	q := NewMemory(BufferConfig{}, nil)
	s := &linkSink{got: make(chan *bus.Batch, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, s, env, q, 1) }()
	defer func() { cancel(); <-done }()

	if err := q.Put(ctx, batch(7), Meta{}); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, func() bool { return s.n.Load() > 0 && env.State().Phase() == connectors.PhaseDown },
		waitfor.Say("the first write never failed"))
	s.up.Store(true)
	env.Up() // what a sink's connect loop does when its link is back
	select {
	case b := <-s.got:
		if b.Records[0].Seq != 7 {
			t.Fatalf("got seq %d", b.Records[0].Seq)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the retry slept through the link's return")
	}
}

// stuckSink's Write returns only when released, whatever its context says.
type stuckSink struct{ release chan struct{} }

func (s *stuckSink) Validate() error                              { return nil }
func (s *stuckSink) Start(context.Context, *connectors.Env) error { return nil }
func (s *stuckSink) Stop(context.Context) error                   { return nil }
func (s *stuckSink) Write(context.Context, *bus.Batch) error      { <-s.release; return nil }

// A write that does not return is reported: the sink goes down, stuck, and
// comes back up when the write finally returns.
func TestStuckWriteIsReported(t *testing.T) {
	saved := StuckAfter
	StuckAfter = 40 * time.Millisecond
	defer func() { StuckAfter = saved }()
	env, err := connectors.NewEnv(connectors.EnvConfig{Name: "plc-archive", Sink: true})
	if err != nil {
		t.Fatal(err)
	}
	env.Up()
	q := NewMemory(BufferConfig{}, nil)
	s := &stuckSink{release: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, s, env, q, 1) }()
	defer func() { cancel(); <-done }()
	if err := q.Put(ctx, batch(1, 2), Meta{}); err != nil {
		t.Fatal(err)
	}
	waitfor.Until(t, 10*time.Second, func() bool { return env.State().Phase() == connectors.PhaseDown },
		func() string { return fmt.Sprintf("stuck sink is %+v", env.State().Snapshot()) })
	if got := env.State().Snapshot().LastError; !strings.Contains(got, "2 records has not returned") {
		t.Fatalf("last error %q", got)
	}
	close(s.release)
	waitfor.Until(t, 10*time.Second, func() bool { return env.State().Phase() == connectors.PhaseUp },
		waitfor.Say("the sink did not come back up when its write returned"))
}
