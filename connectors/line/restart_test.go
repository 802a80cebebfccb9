package line

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/conntest"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

var errInjected = errors.New("injected: reservation refused")

// refusingSeq refuses the reservations numbered from..to (from 1), as a
// lost lease does: the emit fails without publishing, the goroutine that
// emitted returns the error, and the Env restarts it.
type refusingSeq struct {
	mu       sync.Mutex
	calls    int
	next     uint64
	from, to int
}

func (s *refusingSeq) Reserve(n int) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls >= s.from && s.calls <= s.to {
		return 0, errInjected
	}
	first := s.next
	s.next += uint64(n)
	return first, nil
}

func (s *refusingSeq) refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(0, min(s.calls, s.to)-s.from+1)
}

// restartRig runs l on the conntest rig with emits 2..4 refused.
func restartRig(t *testing.T, l *Line) (*conntest.Runner, *refusingSeq) {
	t.Helper()
	seq := &refusingSeq{from: 2, to: 4}
	r := conntest.NewRunner(t, l, connectors.EnvConfig{Type: "line", Seq: seq})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.Start(ctx, r.Env); err != nil {
		t.Fatal(err)
	}
	return r, seq
}

// readSeq reads batches until it holds n records, or fails.
func readSeq(t *testing.T, r *conntest.Runner, n int) []int64 {
	t.Helper()
	var recs []bus.Record
	for len(recs) < n {
		recs = append(recs, r.Next(t, 10*time.Second).Records...)
	}
	return values(t, recs)
}

// drain reads what the rig's bus carries as it comes (the memory bus holds
// a publish until it is acknowledged) until stop closes.
func drain(t *testing.T, r *conntest.Runner, stop <-chan struct{}) <-chan []bus.Record {
	out := make(chan []bus.Record, 1)
	go func() {
		var recs []bus.Record
		var dec bus.Decoder
		defer func() { out <- recs }()
		for {
			select {
			case <-stop:
				return
			case m, ok := <-r.Msgs:
				if !ok {
					return
				}
				var b bus.Batch
				if err := dec.DecodeMessage(m, &b); err != nil {
					t.Errorf("batch does not decode: %v", err)
				}
				m.Ack()
				recs = append(recs, b.Records...)
			}
		}
	}()
	return out
}

// taken waits until the listener has handed n records on: emitted, or
// waiting in its batcher for the next flush.
func taken(t *testing.T, l *Line, n int) {
	t.Helper()
	waitfor.Until(t, 10*time.Second, func() bool {
		return l.env.State().In.Load()+uint64(l.in.Pending()) >= uint64(n)
	}, func() string {
		return fmt.Sprintf("%d emitted and %d pending, want %d", l.env.State().In.Load(), l.in.Pending(), n)
	})
}

// TestListenerSurvivesFlushRestart: the flush goroutine's emits fail three
// times while a client streams, so the Env restarts it three times; then
// lines that wait for the next flush when Stop comes go out in its final
// flush. Every line arrives once.
func TestListenerSurvivesFlushRestart(t *testing.T) {
	// A long interval: only full batches flush, so the last lines are
	// still pending at Stop.
	l := mustDecode(t, "type: line\nlisten: 127.0.0.1:0\nparse: {format: kv, value_type: long}\nbatch_interval: 1h\nbatch_size: 10\n")
	r, seq := restartRig(t, l)
	stop := make(chan struct{})
	got := drain(t, r, stop)
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n, last = 200, 5
	if _, err := c.Write([]byte(seqLines(1, n))); err != nil {
		t.Fatal(err)
	}
	taken(t, l, n)
	waitfor.Until(t, 10*time.Second, func() bool { return seq.refused() == 3 },
		func() string { return fmt.Sprintf("%d emits refused, want 3", seq.refused()) })
	if _, err := c.Write([]byte(seqLines(n+1, n+last))); err != nil {
		t.Fatal(err)
	}
	taken(t, l, n+last)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	close(stop)
	exactlyOnce(t, values(t, <-got), n+last)
	if s := r.Env.State().Snapshot().LastError; strings.Contains(s, "panic") || strings.Contains(s, "dropped") {
		t.Errorf("last error %q", s)
	}
}

// TestTailSurvivesRestart: a tailed file whose emits fail three times
// restarts from its committed offset each time; every line arrives once.
func TestTailSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "feed.log")
	const n = 100
	appendTo(t, path, seqLines(1, n))
	l := mustDecode(t, fileConfig(path, ""))
	r, seq := restartRig(t, l)
	got := readSeq(t, r, n)
	if seq.refused() != 3 {
		t.Fatalf("%d emits refused, want 3: the restart was not exercised", seq.refused())
	}
	appendTo(t, path, seqLines(n+1, n+10)) // the tail goes on after its restarts
	got = append(got, readSeq(t, r, 10)...)
	exactlyOnce(t, got, n+10)
	if m := r.TryNext(t, 50*time.Millisecond); m != nil {
		t.Errorf("%d more records: %s", len(m.Records), fmt.Sprint(values(t, m.Records)))
	}
}
