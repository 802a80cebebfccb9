package mqtt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// TestBlackholesLeaveNoGoroutines is issue 13's leak: every blackhole of an
// MQTT 5 link with publishes in flight used to leave one goroutine per
// unacknowledged PUBLISH behind. Twenty blackholes, each with a full window
// in flight; after every reconnect the goroutine count is back at its
// baseline, and every batch is acknowledged in the end.
func TestBlackholesLeaveNoGoroutines(t *testing.T) {
	if testing.Short() {
		t.Skip("twenty blackholes take several seconds")
	}
	const (
		rounds = 20
		window = 16 // batches in flight when the link goes dark
		slack  = 5  // goroutines the runtime or a late timer may still hold
	)
	c := startCloud(t, nil)
	link, err := flaky.Start(t.Context(), flaky.Config{Target: c.MQTTAddr()})
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	m := newSink(t, "tcp://"+link.Addr(), "5", func(c *Config) {
		c.AckTimeout = conf.Duration(200 * time.Millisecond)
		c.ConnectTimeout = conf.Duration(300 * time.Millisecond)
		c.ReconnectMax = conf.Duration(200 * time.Millisecond)
	})
	env := startSink(t, m)

	var seq uint64
	send := func(n int) {
		t.Helper()
		bs := make([]*bus.Batch, n)
		for i := range bs {
			bs[i] = batch(seq, 10)
			seq += 10
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := pipeline(ctx, m, bs); err != nil {
			t.Fatal(err)
		}
	}
	send(window) // warm up: connection, broker session, proxy pumps
	base := runtime.NumGoroutine()

	for round := range rounds {
		waitPhase(t, env, connectors.PhaseUp)
		// Blackhole first, then send: every batch of the window is then
		// written to a connection that will never answer.
		link.SetMode(flaky.Blackhole)
		done := make(chan struct{})
		go func() { defer close(done); send(window) }()
		waitPhase(t, env, connectors.PhaseDown) // no PUBACK: connection dropped
		link.SetMode(flaky.Up)
		<-done
		if t.Failed() {
			return
		}
		settle(t, fmt.Sprintf("after blackhole %d", round+1), base+slack)
	}
	want := uint64(rounds+1) * window * 10
	r := waitUnique(t, c, want)
	if s := r.Sources["gen"]; s.Unique != want || len(s.Gaps) != 0 {
		t.Fatalf("after %d blackholes: %d unique records, gaps %v; want %d and none", rounds, s.Unique, s.Gaps, want)
	}
}

// settle waits until no more than limit goroutines run.
func settle(t *testing.T, when string, limit int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= limit {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, want at most %d\n%s", when, n, limit, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling a count: nothing to wait on
	}
}

// pipeline delivers bs the way the runtime's pipelined sink runner does:
// Send in order without waiting, wait for the acknowledgements in a second
// goroutine, and write a batch whose send or acknowledgement failed again
// until it is taken.
func pipeline(ctx context.Context, m *MQTT, bs []*bus.Batch) error {
	type inflight struct {
		b    *bus.Batch
		wait func(context.Context) error
	}
	q := make(chan inflight, 16)
	var wg sync.WaitGroup
	var failed error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for f := range q {
			err := f.wait(ctx)
			for err != nil && failed == nil {
				if ctx.Err() != nil {
					failed = fmt.Errorf("batch never acknowledged: %w", err)
					break
				}
				err = m.Write(ctx, f.b)
			}
		}
	}()
	for _, b := range bs {
		wait, err := m.Send(ctx, b)
		if err != nil {
			wait = func(context.Context) error { return err }
		}
		q <- inflight{b, wait}
	}
	close(q)
	wg.Wait()
	if failed == nil && ctx.Err() != nil {
		return errors.New("context ended before every batch was acknowledged")
	}
	return failed
}
