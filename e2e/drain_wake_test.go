package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// Issue 13, item 5: after an outage the first spooled record reached the
// cloud up to 12 s after the link was back, because the sink's retry slept
// out its back-off instead of being woken by the link coming up.
const (
	drainWakeRounds = 5           // outages per fault kind; the median is asserted
	drainWakeBound  = time.Second // the requirement
	// drainWakeRetries is how many failed writes an outage lasts. The
	// runtime's retry back-off (outlet.RetryBackoff: 100 ms doubling, half
	// to all of it with jitter) after the 6th or 7th failure is 1.6–3.2 s or
	// 3.2–6.4 s, so a restore right after the 7th failure finds the runner
	// asleep for at least 1.6 s: without the wake, every round misses the
	// bound. With ack_timeout 500ms the outage lasts about 5–8 s.
	drainWakeRetries = 7
)

// TestDrainWakeAfterOutage cuts (and, separately, blackholes) the link
// between an MQTT 5 uplink with a spool and the cloud broker while records
// keep spooling, restores it just after the sink's retry went to sleep in a
// long back-off, and measures from the restore to the first record the
// broker receives that was emitted during the outage. The median over
// several outages must be within a second, and nothing may be lost.
//
// The uplink reconnects with reconnect_max 200ms, so after a cut the
// connection itself is back within a fraction of a second of the restore;
// after a blackhole the one CONNECT in flight resumes when the link does
// (connect_timeout 30s outlasts the outage: see drainWakeConfig). What is
// under test is that the spool's drain does not then wait out its own retry
// back-off.
func TestDrainWakeAfterOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("ten outages of several seconds")
	}
	for _, mode := range []flaky.Mode{flaky.Cut, flaky.Blackhole} {
		t.Run(mode.String(), func(t *testing.T) {
			// About 2,000 records/s each: no load to speak of, and the
			// two halve the wall time.
			t.Parallel()
			drainWakeRun(t, mode)
		})
	}
}

// drainWakeConfig is 20 tags every 10 ms (2,000 records/s, 100 batches/s
// into the spool) to an MQTT 5 uplink.
//
// connect_timeout is longer than any outage here on purpose. sim/flaky
// accepts connections while blackholed and, on restore, forwards the bytes
// its clients sent meanwhile, even of clients that gave up: every attempt
// abandoned at connect_timeout during the outage then reaches the broker as
// a CONNECT with ferry's client id and takes the session from the live
// connection. MQTT 5 reports that as a takeover (DISCONNECT 0x8E), and the
// uplink backs off a second or more: with connect_timeout 1s, 3 takeovers
// in 5 blackholes and the first spooled record up to 3.7 s after the
// restore. That is a fault of its own, not the drain's wake.
func drainWakeConfig(dataDir, linkAddr string) string {
	return fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    interval: 10ms
    tags: [{name: t, signal: counter, count: 20}]
  cloud:
    type: mqtt
    url: tcp://%s
    version: "5"
    ack_timeout: 500ms
    connect_timeout: 30s
    reconnect_max: 200ms
    store_and_forward: {window: 8}
routes:
  - {from: gen, to: cloud}
`, dataDir, linkAddr)
}

// drainWakeDelay is one outage's measurement, from the restore.
type drainWakeDelay struct {
	any    time.Duration // the first record of any kind at the broker
	outage time.Duration // the first record emitted during the outage
	length time.Duration // how long the outage lasted
}

func drainWakeRun(t *testing.T, mode flaky.Mode) {
	r := newRig(t)
	p := pipeline(t, drainWakeConfig(t.TempDir(), r.link.Addr()))
	stopped := false
	defer func() {
		if !stopped {
			stop(t, p)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), drainWakeRounds*(drainWakeUp+time.Minute))
	defer cancel()
	if _, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return c.Unique > 1000 }); err != nil {
		t.Fatalf("first records: %v", err)
	}
	watch := drainWakeSubscribe(t, r.cloud.MQTTAddr())

	var delays []drainWakeDelay
	for round := range drainWakeRounds {
		drainWakeStayUp(ctx, t, p)
		retries := drainWakeRetryCount(t, p)
		r.link.SetMode(mode)
		cut := time.Now()
		failed := func(n int) func() bool {
			return func() bool { return drainWakeRetryCount(t, p) >= retries+float64(n) }
		}
		why := func() string {
			return fmt.Sprintf("round %d: %.0f failed writes during the outage, want %d", round, drainWakeRetryCount(t, p)-retries, drainWakeRetries)
		}
		// Once a write failed, the connection it went out on is closed
		// and the runner sends nothing new until the failed batch is
		// taken: a record emitted from then on has not been on the wire
		// (a blackholed proxy holds the bytes of dropped connections and
		// lets them through on restore, so the first arrival may be one of
		// those). Its arrival is the drain's.
		waitfor.Until(t, time.Minute, failed(1), why)
		firstSpooled := module(p, "gen").Out
		// The event that ends the outage: the runner's retry has just gone
		// to sleep in a back-off of 1.6 s or more.
		waitfor.Until(t, time.Minute, failed(drainWakeRetries), why)
		m := module(p, "cloud")
		if m.Phase != "down" || m.Spool == nil || m.Spool.Records == 0 || module(p, "gen").Out <= firstSpooled {
			t.Fatalf("round %d: an outage that tests nothing: uplink %s, spool %+v", round, m.Phase, m.Spool)
		}

		hit := watch.arm(firstSpooled)
		r.link.SetMode(flaky.Up)
		restored := time.Now()
		select {
		case <-hit:
		case <-ctx.Done():
			t.Fatalf("round %d: no record emitted during the outage arrived: %v", round, ctx.Err())
		}
		anyAt, spooledAt := watch.times()
		delays = append(delays, drainWakeDelay{length: restored.Sub(cut), any: anyAt.Sub(restored), outage: spooledAt.Sub(restored)})

		// Drained: the spool is back to what live traffic keeps in flight.
		eventually(t, "the backlog to drain", func() bool {
			s := module(p, "cloud").Spool
			return s != nil && s.Records < 1000
		})
	}

	// Everything emitted up to now spans every outage; it must all arrive
	// while the pipeline runs on.
	emitted := module(p, "gen").Out
	rep, err := r.cloud.Wait(ctx, func(c cloud.Report) bool { return allBelow(c.Sources["gen"], emitted) })
	if err != nil {
		t.Fatalf("records lost across %d outages: %v; gaps %v", drainWakeRounds, err, rep.Sources["gen"].Gaps)
	}
	stop(t, p)
	stopped = true

	var anyD, outD, lens []time.Duration
	for _, d := range delays {
		anyD, outD, lens = append(anyD, d.any), append(outD, d.outage), append(lens, d.length)
	}
	med := drainWakeMedian(outD)
	t.Logf("%s: outages %s; from restore to the first record at the broker %s, to the first record emitted during the outage %s (median %v); %d records emitted, all arrived, %d duplicates; %.0f session takeovers seen by the uplink",
		mode, drainWakeList(lens), drainWakeList(anyD), drainWakeList(outD), med.Round(time.Millisecond), emitted, rep.Sources["gen"].Duplicates,
		drainWakeCounter(t, p, "ferry_mqtt_session_takeovers_total", "module"))
	if med > drainWakeBound {
		t.Fatalf("%s: median delay from the link's return to the first spooled record at the cloud is %v, want at most %v (all: %s)",
			mode, med.Round(time.Millisecond), drainWakeBound, drainWakeList(outD))
	}
}

// drainWakeUp is how long the uplink's connection stays up between two
// outages. The uplink reads a connection that ends with no error within
// 5 s of connecting as the broker's doing, and three in a row as a session
// takeover, backing off a second or more; a cut's reset ends a connection
// that way too. Outages closer together than that would measure the
// takeover back-off, not the drain's wake (with about 1.5 s between cuts:
// 3 takeovers in 5 cuts).
const drainWakeUp = 6 * time.Second

// drainWakeStayUp waits until the uplink's connection has been up for
// drainWakeUp.
func drainWakeStayUp(ctx context.Context, t *testing.T, p *router.Pipeline) {
	t.Helper()
	eventually(t, "the uplink to be up", func() bool { return module(p, "cloud").Phase == "up" })
	left := drainWakeUp - time.Since(module(p, "cloud").Since)
	if left <= 0 {
		return
	}
	up := time.NewTimer(left)
	defer up.Stop()
	select {
	case <-up.C:
	case <-ctx.Done():
		t.Fatalf("keeping the link up: %v", ctx.Err())
	}
}

// drainWakeWatch times arrivals at the cloud broker as a subscriber sees
// them. The cloud's own Wait builds a whole report (sorting its latency
// sample) on every payload, under the lock its ingest takes: fine to wait
// on, but it slows a drain it would be timing.
type drainWakeWatch struct {
	mu            sync.Mutex
	dec           bus.Decoder
	armed         bool
	from          uint64 // the first seq that was spooled, not sent
	anyAt, fromAt time.Time
	hit           chan struct{} // closed when fromAt is set
}

// drainWakeSubscribe subscribes to everything ferry uplinks to the broker
// at addr (directly, not through the flaky link).
func drainWakeSubscribe(t *testing.T, addr string) *drainWakeWatch {
	t.Helper()
	w := &drainWakeWatch{}
	opts := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("drain-wake-watch").
		SetCleanSession(true).SetAutoReconnect(false).SetOrderMatters(true)
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watch: connect to %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	if tok := c.Subscribe("ferry/#", 0, w.receive); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watch: subscribe: %v", tok.Error())
	}
	return w
}

// arm starts timing: the next payload's arrival, and the first record of
// gen with seq from or later. The channel is closed when that arrives.
func (w *drainWakeWatch) arm(from uint64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.armed, w.from, w.anyAt, w.fromAt = true, from, time.Time{}, time.Time{}
	w.hit = make(chan struct{})
	return w.hit
}

// times returns when the first payload and the first spooled record came.
func (w *drainWakeWatch) times() (anyAt, fromAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.anyAt, w.fromAt
}

func (w *drainWakeWatch) receive(_ paho.Client, m paho.Message) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.armed {
		return
	}
	if w.anyAt.IsZero() {
		w.anyAt = now
	}
	var b bus.Batch
	if err := w.dec.Decode(m.Payload(), &b); err != nil {
		return // the cloud counts undecodable payloads; the loss check sees them
	}
	for _, r := range b.Records {
		if r.Source == "gen" && r.Seq >= w.from {
			w.armed, w.fromAt = false, now
			close(w.hit)
			return
		}
	}
}

// drainWakeRetryCount is how many batch writes the uplink has retried.
func drainWakeRetryCount(t *testing.T, p *router.Pipeline) float64 {
	return drainWakeCounter(t, p, "ferry_sink_retries_total", "sink")
}

// drainWakeCounter reads the counter name of the module "cloud", labelled
// by label.
func drainWakeCounter(t *testing.T, p *router.Pipeline, name, label string) float64 {
	t.Helper()
	mfs, err := p.Registry().Gather()
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == "cloud" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func drainWakeMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func drainWakeList(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(parts, " ")
}
