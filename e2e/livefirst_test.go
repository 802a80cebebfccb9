package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/internal/waitfor"
	"github.com/ferry-gateway/ferry/router/outlet"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// Issue 18, item 2: with store_and_forward drain mode live-first, data
// that comes in after an outage goes ahead of the backlog the outage left,
// at live_share of the link, and the backlog drains behind it, marked.

// TestLiveFirstAfterAnOutage cuts the link between an MQTT 5 uplink and
// mosquitto for a few seconds while a generator keeps spooling, with the
// link limited to about twice the ingest rate so the backlog takes a
// while to drain. Once the link is back, live records must arrive before
// the backlog is done, every (source, seq) must arrive, and the backlog
// (only it) must carry the user property ferry-backfill.
func TestLiveFirstAfterAnOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("an outage of several seconds and its drain")
	}
	res := liveFirstRun(t, liveFirstCase{
		mode: "live-first", interval: "10ms", tags: 20, outage: 4 * time.Second, bandwidth: 2,
	})
	if res.firstLive <= 0 || res.firstLive >= res.drained {
		t.Fatalf("the first record sampled after the restore arrived %v after it, the backlog was done %v after it: live data did not go first",
			res.firstLive, res.drained)
	}
	if res.backfilled == 0 {
		t.Fatal("no record arrived marked ferry-backfill")
	}
	if res.markedLate > 0 {
		t.Fatalf("%d records sampled after live data flowed again arrived marked ferry-backfill", res.markedLate)
	}
	if d := res.drain; d.LiveSent == 0 || d.Backfilled == 0 {
		t.Fatalf("the status's drain block does not tell what happened: %+v", d)
	}
	// Read a moment later, the series are at least what the block said.
	if res.metricLive < float64(res.drain.LiveSent) || res.metricBackfill < float64(res.drain.Backfilled) {
		t.Fatalf("ferry_drain_batches_total live %v, backfill %v; the drain block said %+v",
			res.metricLive, res.metricBackfill, res.drain)
	}
	t.Logf("backlog %d records drained %v after the restore; live p99 %v; %d marked backfill, %d duplicates",
		res.backlog, res.drained, res.liveP99, res.backfilled, res.dups)
}

// BenchmarkLiveFirst is the measurement: 10,000 records/s, the
// link limited to about twice that (in bytes, measured before the outage),
// a 5-minute outage, then the drain, once per drain mode. It reports the
// live records' p99 latency (sampling to arrival at the broker's
// subscriber, for records sampled from the restore until the backlog is
// done) and the time from the restore until the backlog is done.
//
//	go test ./e2e -run '^$' -bench LiveFirst -benchtime 1x -timeout 60m
//
// (about ten minutes a mode; -bench 'LiveFirst/ordered' runs one).
//
// LIVEFIRST_OUTAGE (a duration) shortens the outage for a quick look.
func BenchmarkLiveFirst(b *testing.B) {
	outage := 5 * time.Minute
	if v, ok := os.LookupEnv("LIVEFIRST_OUTAGE"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("LIVEFIRST_OUTAGE: %v", err)
		}
		outage = d
	}
	for _, v := range []struct {
		name, mode string
		share      float64
	}{
		{"ordered", "ordered", 0},
		{"live-first", "live-first", 0.5},
		// Live data's share above its ingest rate: see BENCHMARKS.md.
		{"live-first-share-0.6", "live-first", 0.6},
	} {
		b.Run(v.name, func(b *testing.B) {
			mode := v.name
			for range b.N {
				res := liveFirstRun(b, liveFirstCase{mode: v.mode, share: v.share, interval: "10ms", tags: 100, outage: outage, bandwidth: 2})
				b.ReportMetric(res.liveP99.Seconds(), "s-live-p99")
				b.ReportMetric(res.liveP50.Seconds(), "s-live-p50")
				b.ReportMetric(res.drained.Seconds(), "s-backlog-drain")
				b.ReportMetric(float64(res.backlog), "records-backlog")
				b.ReportMetric(float64(res.linkRate), "B/s-link")
				b.Logf("%s: backlog %d records, drained %v after the restore; live p50 %v p99 %v (%d records); link %d B/s, used %d B/s while draining; %d marked backfill, %d duplicates",
					mode, res.backlog, res.drained, res.liveP50, res.liveP99, res.live, res.linkRate, res.linkUsed, res.backfilled, res.dups)
			}
		})
	}
}

type liveFirstCase struct {
	mode      string  // drain mode
	share     float64 // live_share; 0: the default
	interval  string  // generator interval
	tags      int     // records per interval
	outage    time.Duration
	bandwidth float64 // the link's rate as a multiple of the ingest bytes
}

type liveFirstResult struct {
	backlog    int           // records sampled before the restore and not yet at the broker then
	drained    time.Duration // restore → every record sampled before it arrived
	firstLive  time.Duration // restore → the first record sampled after it arrived
	liveP50    time.Duration // sampling → arrival, records sampled between the restore and drained
	liveP99    time.Duration
	live       int
	backfilled int // records that arrived marked ferry-backfill
	markedLate int // of them, sampled after the first live record arrived
	dups       int
	linkRate   int64                 // the link's limit, bytes/s
	linkUsed   int64                 // bytes/s that crossed it from the restore until the backlog was done
	drain      outlet.LiveFirstStats // the uplink's drain block on /api/status at the end
	// metricLive and metricBackfill are ferry_drain_batches_total's live
	// and backfill series for the uplink, read just after the drain block.
	metricLive, metricBackfill float64
}

func liveFirstRun(tb testing.TB, c liveFirstCase) liveFirstResult {
	broker := testbroker.Mosquitto(tb)
	link, err := flaky.Start(tb.Context(), flaky.Config{Target: broker})
	if err != nil {
		tb.Fatal(err)
	}
	defer link.Close()
	sub := subscribeArrivals(tb, broker, "ferry/lf/#")
	share := ""
	if c.share > 0 {
		share = fmt.Sprintf(", live_share: %g", c.share)
	}
	p := pipeline(tb, fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    interval: %s
    tags: [{name: t, signal: counter, count: %d}]
  cloud:
    type: mqtt
    url: tcp://%s
    version: "5"
    topic: ferry/lf/{device}
    format: avro
    ack_timeout: 5s
    connect_timeout: 5s
    reconnect_max: 200ms
    store_and_forward: {window: 16, drain: {mode: %s%s}}
routes:
  - {from: gen, to: cloud}
`, tb.TempDir(), c.interval, c.tags, link.Addr(), c.mode, share))
	defer stop(tb, p)

	waitfor.Until(tb, time.Minute, func() bool { return sub.unique() > 10*c.tags }, waitfor.Say("no records reached the broker"))
	// The link's rate: a multiple of the ingest rate in link bytes (bytes
	// per record crossing the link, unlimited, times records per second).
	timer(2 * time.Second) // past the start
	up, n := link.Stats().BytesUp, sub.unique()
	timer(3 * time.Second)
	perRecord := float64(link.Stats().BytesUp-up) / float64(sub.unique()-n)
	every, err := time.ParseDuration(c.interval)
	if err != nil {
		tb.Fatal(err)
	}
	ingest := perRecord * float64(c.tags) / every.Seconds()
	rate := int64(ingest * c.bandwidth)
	link.SetBandwidth(rate)
	timer(2 * time.Second) // steady under the limit

	link.SetMode(flaky.Cut)
	timer(c.outage)
	restore := time.Now()
	backlog := sub.lastArrived() // highest seq at the broker at the restore
	upAtRestore := link.Stats().BytesUp
	link.SetMode(flaky.Up)

	// Every record sampled before the restore, then every one sampled
	// until the backlog was done, must arrive.
	within := 3*c.outage + 2*time.Minute
	waitfor.Until(tb, within, func() bool { return sub.completePast(restore) },
		func() string { return "the backlog did not drain: " + sub.holes() })
	before := sub.lastBefore(restore)
	drainedAt := sub.completedAt(before)
	used := float64(link.Stats().BytesUp-upAtRestore) / time.Since(restore).Seconds()
	waitfor.Until(tb, within, func() bool { return sub.completePast(drainedAt) },
		func() string { return "live records missing: " + sub.holes() })
	until := sub.lastBefore(drainedAt)
	res := sub.result(restore, before, until)
	res.backlog = int(before - backlog)
	res.drained = drainedAt.Sub(restore)
	res.linkRate, res.linkUsed = rate, int64(used)
	for _, m := range p.Status().Modules {
		if m.Spool != nil && m.Spool.Drain != nil {
			res.drain = *m.Spool.Drain
		}
	}
	res.metricLive = metric(p, "ferry_drain_batches_total", map[string]string{"sink": "cloud", "path": "live"})
	res.metricBackfill = metric(p, "ferry_drain_batches_total", map[string]string{"sink": "cloud", "path": "backfill"})
	return res
}

// timer waits d: a span measured, not an event awaited.
func timer(d time.Duration) { <-time.After(d) }

// arrivals is a subscriber's record of every generator record: when it
// was sampled, when it first arrived, and whether it came marked.
type arrivals struct {
	start time.Time
	mu    sync.Mutex
	// By seq. Times in ms since start (0: not yet); marked counts the
	// arrivals carrying ferry-backfill.
	sampled, arrived []int32
	marked           []uint8
	n, dups          int
	maxSeq           uint64
	// contig is the lowest seq not yet arrived, from the first one seen:
	// everything below it is in.
	contig uint64
}

func subscribeArrivals(tb testing.TB, broker, filter string) *arrivals {
	a := &arrivals{start: time.Now()}
	nc, err := net.DialTimeout("tcp", broker, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	var dec bus.Decoder
	var b bus.Batch
	cl := paho5.NewClient(paho5.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(pr paho5.PublishReceived) (bool, error) {
			now := time.Now()
			marked := false
			if pp := pr.Packet.Properties; pp != nil {
				marked = pp.User.Get("ferry-backfill") == "true"
			}
			b.Reset()
			if err := dec.Decode(pr.Packet.Payload, &b); err != nil {
				tb.Errorf("decode a payload on %s: %v", pr.Packet.Topic, err)
				return true, nil
			}
			a.add(&b, marked, now)

			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(tb.Context(), 10*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho5.Connect{ClientID: "livefirst-checker", KeepAlive: 30, CleanStart: true}); err != nil {
		tb.Fatal(err)
	}
	if _, err := cl.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: 1}}}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = cl.Disconnect(&paho5.Disconnect{})
		select {
		case <-cl.Done():
		case <-time.After(5 * time.Second):
		}
	})
	return a
}

func (a *arrivals) ms(t time.Time) int32 { return int32(t.Sub(a.start)/time.Millisecond) + 1 }

func (a *arrivals) add(b *bus.Batch, marked bool, now time.Time) {
	at := a.ms(now)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range b.Records {
		r := &b.Records[i]
		if r.Source != "gen" {
			continue
		}
		s := r.Seq
		if s >= uint64(len(a.arrived)) {
			n := max(s+1, uint64(2*len(a.arrived)))
			a.sampled = append(a.sampled, make([]int32, int(n)-len(a.sampled))...)
			a.arrived = append(a.arrived, make([]int32, int(n)-len(a.arrived))...)
			a.marked = append(a.marked, make([]uint8, int(n)-len(a.marked))...)
		}
		if marked {
			a.marked[s]++
		}
		if a.arrived[s] != 0 {
			a.dups++
			continue
		}
		if a.n == 0 {
			a.contig = s
		}
		a.arrived[s] = at
		a.sampled[s] = a.ms(time.Unix(0, r.SourceTime))
		a.n++
		a.maxSeq = max(a.maxSeq, s)
		for a.contig < uint64(len(a.arrived)) && a.arrived[a.contig] != 0 {
			a.contig++
		}
	}
}

func (a *arrivals) unique() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

// lastArrived is the highest seq that has arrived.
func (a *arrivals) lastArrived() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.maxSeq
}

// completePast reports whether every record sampled before t arrived: the
// seqs arrived without a gap up to one sampled at t or later (seqs grow
// with sampling time: one generator).
func (a *arrivals) completePast(t time.Time) bool {
	lim := a.ms(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n > 0 && a.contig > 0 && a.sampled[a.contig-1] >= lim
}

// lastBefore is the last seq sampled before t; after completePast(t).
func (a *arrivals) lastBefore(t time.Time) uint64 {
	lim := a.ms(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.contig - 1
	for s > 0 && a.sampled[s] >= lim {
		s--
	}
	return s
}

// completedAt is when the last of the seqs up to last arrived.
func (a *arrivals) completedAt(last uint64) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	var at int32
	for s := last; s > 0 && a.arrived[s] != 0; s-- {
		at = max(at, a.arrived[s])
	}
	return a.start.Add(time.Duration(at-1) * time.Millisecond)
}

func (a *arrivals) holes() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var missing []uint64
	n := 0
	for s := a.contig; s < a.maxSeq; s++ {
		if a.arrived[s] == 0 {
			n++
			if len(missing) < 10 {
				missing = append(missing, s)
			}
		}
	}
	return fmt.Sprintf("%d seqs missing below %d (first %v); %d arrived", n, a.maxSeq, missing, a.n)
}

// result sums up the arrivals of a run whose link came back at restore:
// before is the last seq sampled before it, until the last sampled before
// the backlog was done.
func (a *arrivals) result(restore time.Time, before, until uint64) liveFirstResult {
	a.mu.Lock()
	defer a.mu.Unlock()
	var res liveFirstResult
	r := a.ms(restore)
	first := int32(0)
	var lat []int32
	for s := before + 1; s <= until; s++ {
		lat = append(lat, a.arrived[s]-a.sampled[s])
		if first == 0 || a.arrived[s] < first {
			first = a.arrived[s]
		}
	}
	for s := range a.marked {
		if a.marked[s] == 0 {
			continue
		}
		res.backfilled++
		// Sampled after live data flowed again: it went live, so its
		// spool entry must not have been sent as backfill. (Records
		// spooled between the restore and the first batch taken are
		// backlog: the outlet keeps live copies only while the link
		// takes batches.)
		if first != 0 && a.sampled[s] > first {
			res.markedLate++
		}
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		res.liveP50 = time.Duration(lat[len(lat)/2]) * time.Millisecond
		res.liveP99 = time.Duration(lat[len(lat)*99/100]) * time.Millisecond
		res.firstLive = time.Duration(first-r) * time.Millisecond
	}
	res.live, res.dups = len(lat), a.dups
	return res
}
