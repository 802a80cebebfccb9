package opcua

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ferry-gateway/ferry/bus"
	simopcua "github.com/ferry-gateway/ferry/sim/opcua"
)

// counter runs a connector subscribed to the sim's line variable 0, a
// Double that rises by 0.25 every Tick, with six Publish requests
// outstanding so that several responses can be in flight at once.
func counter(t *testing.T, cfg simopcua.Config) (*simopcua.Server, *rig) {
	t.Helper()
	cfg.Tags, cfg.PerLine = 1, 1
	s := sim(t, cfg)
	return s, run(t, decode(t, counterConfig(s)))
}

// counterConfig subscribes to the sim's first tag as "counter". A
// lifetime and watchdog longer than the pauses of the tests: a server
// rightly ends a subscription that gets no Publish request for its
// lifetime, which is not what these tests are about.
func counterConfig(s *simopcua.Server) string {
	return config(s, fastTop+`subscription:
  publishing_interval: 20ms
  keepalive_count: 5
  lifetime_count: 100
  watchdog: 2s
  publish_requests: 6
nodes:
  - {id: "`+s.NodeIDURI(s.Tag(0))+`", name: counter}
`)
}

// rising checks that every counter value it sees is above the last one.
type rising struct {
	t    *testing.T
	last float64
	n    int
}

func (c *rising) batch(b *bus.Batch) {
	c.t.Helper()
	if b == nil {
		return
	}
	for _, rec := range b.Records {
		if rec.Tag != "counter" || rec.Quality != bus.Good {
			continue
		}
		c.check(rec.Value.Double())
	}
}

func (c *rising) check(v float64) {
	c.t.Helper()
	if c.n > 0 && v <= c.last {
		c.t.Errorf("counter went from %v to %v (value %d)", c.last, v, c.n)
	}
	c.last = v
	c.n++
}

// TestOrderAfterHeldPublish: the sim holds publish responses until
// several are queued, then sends them newest first; the counter must
// still reach the bus strictly rising.
func TestOrderAfterHeldPublish(t *testing.T) {
	s, r := counter(t, simopcua.Config{Interval: 10 * time.Millisecond})
	c := &rising{t: t}
	for c.n < 3 {
		c.batch(r.Next(t, 10*time.Second))
	}
	const rounds = 8
	for range rounds {
		s.HoldPublish()
		for deadline := time.Now().Add(10 * time.Second); s.Held() < 4; {
			if time.Now().After(deadline) {
				t.Fatalf("the sim held only %d responses", s.Held())
			}
			c.batch(r.next(t, 10*time.Millisecond))
		}
		if n := s.ReleasePublish(true); n < 4 {
			t.Fatalf("released %d responses", n)
		}
		for range 6 {
			c.batch(r.Next(t, 10*time.Second))
		}
	}
	st := r.c.Stats()
	if st.Reordered < rounds {
		t.Errorf("only %d messages arrived ahead of a missing one in %d reversed releases: the fault did not bite", st.Reordered, rounds)
	}
	if st.NotificationGaps != 0 {
		t.Errorf("%d gaps, want none (state %+v)", st.NotificationGaps, r.Env.State().Snapshot())
	}
	t.Logf("%d values, stats %+v", c.n, st)
}

// TestOrderConsumerPaused blocks the bus twenty times for 350 ms (what a
// paused process or a long GC looks like to the publish loops: responses
// pile up and are handed on at once) and checks the order holds.
func TestOrderConsumerPaused(t *testing.T) {
	if testing.Short() {
		t.Skip("20 pauses of 350 ms")
	}
	_, r := counter(t, simopcua.Config{Interval: 20 * time.Millisecond})
	c := &rising{t: t}
	for range 20 {
		c.batch(r.Next(t, 10*time.Second))
		time.Sleep(350 * time.Millisecond) // the fault itself: nobody takes the next batch
	}
	for range 10 {
		c.batch(r.Next(t, 10*time.Second))
	}
	if st := r.c.Stats(); st.NotificationGaps != 0 {
		t.Errorf("%d gaps after pauses, want none", st.NotificationGaps)
	}
	t.Logf("%d values, stats %+v", c.n, r.c.Stats())
}

// TestMissingSequenceNumber loses one NotificationMessage. The next
// keep-alive (and AvailableSequenceNumbers) tell the connector it is
// missing; Republish brings it back when the server keeps it, and when it
// cannot, the gap is counted, reported with its sequence number, and the
// later values still come.
func TestMissingSequenceNumber(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     simopcua.Config
		recover bool
		cause   string
	}{
		{name: "republished", recover: true},
		{name: "unsupported", cfg: simopcua.Config{NoRepublish: true}, cause: "does not support Republish"},
		{name: "not available", cfg: simopcua.Config{RetransmitQueue: -1}, cause: "BadMessageNotAvailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, r := counter(t, tc.cfg)
			val := func(gen uint64) float64 { return expect(0, gen).Double() }
			wantNext := func(gen uint64) {
				t.Helper()
				r.until(t, 10*time.Second, fmt.Sprintf("the value of generation %d", gen), func(rec bus.Record) bool {
					if rec.Tag != "counter" {
						return false
					}
					if got := rec.Value.Double(); got != val(gen) {
						t.Fatalf("counter = %v, want %v (generation %d)", got, val(gen), gen)
					}
					return true
				})
			}
			wantNext(0)
			s.Tick()
			wantNext(1)
			s.LosePublish(1)
			s.Tick() // generation 2 goes missing
			poll(t, 10*time.Second, "the sim losing a message", func() bool { return s.Stats().NotificationsLost > 0 })
			if tc.recover {
				wantNext(2)
			}
			s.Tick()
			wantNext(3)
			st := r.c.Stats()
			gaps := gathered(t, r, "ferry_opcua_notification_gaps_total")
			if tc.recover {
				if st.Republished != 1 || st.NotificationGaps != 0 || gaps != 0 || s.Stats().Republished != 1 {
					t.Errorf("republished %d (sim %d), gaps %d (metric %v); want 1 republished, no gap", st.Republished, s.Stats().Republished, st.NotificationGaps, gaps)
				}
				return
			}
			if st.NotificationGaps != 1 || gaps != 1 {
				t.Errorf("gaps %d (metric %v), want 1", st.NotificationGaps, gaps)
			}
			last := r.Env.State().Snapshot().LastError
			if !strings.Contains(last, "sequence number 3 lost") || !strings.Contains(last, tc.cause) {
				t.Errorf("last error %q does not name the lost sequence number and %q", last, tc.cause)
			}
		})
	}
}

// gathered returns the value of a counter of the connector's module.
func gathered(t *testing.T, r *rig, name string) float64 {
	t.Helper()
	g, ok := r.Env.Metrics.Reg.(prometheus.Gatherer)
	if !ok {
		t.Fatalf("the test registry is a %T, not a Gatherer", r.Env.Metrics.Reg)
	}
	mfs, err := g.Gather()
	requireNoErr(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "module" && l.GetValue() == r.Env.Name {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{module=%q}", name, r.Env.Name)
	return 0
}
