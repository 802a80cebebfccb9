//go:build soak

package e2e

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// The soak test (issue 13, item 4): generator → router → spool → MQTT 5
// uplink → sim/flaky → sim/cloud at 50,000 records/s for FERRY_SOAK (20m
// by default), the link cut or blackholed (in turn) for 20 s of every
// minute (see soakCycle for shorter runs). It asserts flat goroutines and
// heap and that every (source, seq) arrived. The 20-minute run:
//
//	go test -tags soak -run Soak -timeout 30m ./e2e/
//
// and a short one: FERRY_SOAK=2m go test -tags soak -run Soak -timeout 10m -v ./e2e/
const (
	soakDefault = 20 * time.Minute
	soakRate    = 50_000 // records/s offered
	// soakGoroutineSlack is how far the last goroutine sample may be above
	// the first. The MQTT 5 leak this holds down left about 31 per
	// blackhole behind.
	soakGoroutineSlack = 10
	// soakHeapSlack is how far the last heap sample (HeapInuse after a
	// GC) may be above the first, as a share of the first, plus
	// soakHeapFloor: what allocator and pool noise can do, not a trend.
	soakHeapSlack = 0.20
	soakHeapFloor = 2 << 20
)

// soakSample is the process at the end of one cycle's up phase, the
// backlog drained.
type soakSample struct {
	at         time.Duration // since the start
	goroutines int
	heapInuse  uint64 // after runtime.GC
	rss        int64
	emitted    uint64
	spooled    int64
	backlog    int64 // spooled at the end of the cycle's outage
}

func (s soakSample) String() string {
	return fmt.Sprintf("%7s  %4d goroutines  heap %6.1f MiB  rss %6.1f MiB  emitted %10d  outage backlog %8d  spooled now %6d",
		s.at.Round(time.Second), s.goroutines, float64(s.heapInuse)/(1<<20), float64(s.rss)/(1<<20), s.emitted, s.backlog, s.spooled)
}

func TestSoak(t *testing.T) {
	total := soakDefault
	if v := os.Getenv("FERRY_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("FERRY_SOAK=%q: want a duration such as 20m or 2m", v)
		}
		total = d
	}
	cycle, down := soakCycle(total)
	cycles := int(total / cycle)
	if cycles < 2 {
		t.Fatalf("FERRY_SOAK=%v: too short for two cycles of %v (a warm-up and one to compare)", total, cycle)
	}
	t.Logf("soak: %v at %d records/s, %d cycles of %v, the link down for the first %v of each (cut and blackhole in turn)",
		total, soakRate, cycles, cycle, down)

	r := newRig(t)
	c, link := r.cloud, r.link
	ctx, cancel := context.WithTimeout(t.Context(), total+10*time.Minute)
	defer cancel()

	start := time.Now()
	p := pipeline(t, soakConfig(t.TempDir(), link.Addr()))
	stopped := false
	defer func() {
		if !stopped {
			stop(t, p)
		}
	}()

	// Each cycle: the link down, then up; at its end, once the backlog has
	// drained, a sample. The first sample, after one outage and its drain,
	// is the baseline the last is held to.
	var samples []soakSample
	for i := range cycles {
		mode := flaky.Cut
		if i%2 == 1 {
			mode = flaky.Blackhole
		}
		at := start.Add(time.Duration(i) * cycle)
		soakUntil(ctx, t, at)
		link.SetMode(mode)
		soakUntil(ctx, t, at.Add(down))
		// An outage that ferry did not see, or that spooled nothing,
		// would soak nothing.
		m := module(p, "cloud")
		if m.Phase != "down" || m.Spool == nil || m.Spool.Records < soakRate {
			t.Fatalf("cycle %d: at the end of a %v %s the uplink is %s with %+v spooled", i+1, down, mode, m.Phase, m.Spool)
		}
		backlog := m.Spool.Records
		link.SetMode(flaky.Up)
		soakUntil(ctx, t, at.Add(cycle))
		s := soakSnapshot(ctx, t, p, start, cycle)
		s.backlog = backlog
		samples = append(samples, s)
		t.Logf("cycle %2d (%-9s) %v", i+1, mode, s)
	}
	elapsed := time.Since(start)

	// No loss: everything emitted so far arrives, the pipeline still
	// running. Polled once a second: a cloud report sorts its latency
	// sample, too dear to build on every payload at this rate.
	emitted := module(p, "gen").Out
	var rep cloud.Report
	deadline := time.Now().Add(5 * time.Minute)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		rep = c.Report()
		if allBelow(rep.Sources["gen"], emitted) {
			break
		}
		if time.Now().After(deadline) {
			src := rep.Sources["gen"]
			t.Fatalf("records lost: %d emitted, %d unique at the cloud, first %d last %d, gaps %v",
				emitted, src.Unique, src.First, src.Last, src.Gaps)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("waiting for every record: %v", ctx.Err())
		}
	}
	spool := module(p, "cloud").Spool
	stop(t, p)
	stopped = true

	// The last of the series is the smaller of its last two samples: a
	// sample taken with a burst in flight reads a few goroutines or MiB
	// high (seen: 34 against 29, 9.3 MiB against 6.9), and a leak raises
	// both.
	first, last := samples[0], samples[len(samples)-1]
	if prev := samples[len(samples)-2]; len(samples) > 2 {
		last.goroutines = min(last.goroutines, prev.goroutines)
		last.heapInuse = min(last.heapInuse, prev.heapInuse)
	}
	var table strings.Builder
	for i, s := range samples {
		fmt.Fprintf(&table, "\n  cycle %2d  %v", i+1, s)
	}
	src := rep.Sources["gen"]
	t.Logf("soak: %v, %d records emitted (%.0f/s), %d unique at the cloud, %d duplicates, gaps %v, spool drops %v; %d connections through the link, %.0f session takeovers; samples:%s",
		elapsed.Round(time.Second), emitted, float64(emitted)/elapsed.Seconds(), src.Unique, src.Duplicates, src.Gaps, spool.Dropped,
		link.Stats().Accepted, drainWakeCounter(t, p, "ferry_mqtt_session_takeovers_total", "module"), table.String())

	if len(src.Gaps) != 0 || len(spool.Dropped) != 0 {
		t.Errorf("loss: gaps %v, spool drops %v", src.Gaps, spool.Dropped)
	}
	if got := float64(emitted) / elapsed.Seconds(); got < 0.9*soakRate {
		t.Errorf("the generator made %.0f records/s, not the %d the soak is about", got, soakRate)
	}
	if last.goroutines > first.goroutines+soakGoroutineSlack {
		t.Errorf("goroutines grew from %d to %d over %d cycles (slack %d)", first.goroutines, last.goroutines, len(samples)-1, soakGoroutineSlack)
	}
	if limit := uint64(float64(first.heapInuse)*(1+soakHeapSlack)) + soakHeapFloor; last.heapInuse > limit {
		t.Errorf("heap in use after GC grew from %.1f MiB to %.1f MiB over %d cycles (limit %.1f MiB)",
			float64(first.heapInuse)/(1<<20), float64(last.heapInuse)/(1<<20), len(samples)-1, float64(limit)/(1<<20))
	}
}

// soakCycle is the flapping period for a run of total and how long the
// link is down in each: 20 s every minute, as in the issue; a run shorter
// than 10 minutes gets six cycles (at least 20 s each), down a third of
// each, so a short run still has a warm-up and several samples.
func soakCycle(total time.Duration) (cycle, down time.Duration) {
	if total >= 10*time.Minute {
		return time.Minute, 20 * time.Second
	}
	cycle = max(total/6, 20*time.Second).Round(time.Second)
	return cycle, cycle / 3
}

// soakConfig is 10 devices × 500 tags every 100 ms (50,000 records/s in
// 100 batches/s) through a spool to an MQTT 5 uplink. ack_timeout 2s is
// shorter than any outage, so a blackhole tears its connection down with
// a window of publishes in flight (what leaked on MQTT 5); reconnect_max
// 2s keeps a short cycle's up phase for draining, not for waiting to
// reconnect.
func soakConfig(dataDir, linkAddr string) string {
	return fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    devices: 10
    interval: 100ms
    tags: [{name: t, signal: counter, count: 500}]
  cloud:
    type: mqtt
    url: tcp://%s
    version: "5"
    ack_timeout: 2s
    reconnect_max: 2s
    store_and_forward: {window: 16}
routes:
  - {from: gen, to: cloud}
`, dataDir, linkAddr)
}

// soakUntil waits until the wall clock reaches at.
func soakUntil(ctx context.Context, t *testing.T, at time.Time) {
	t.Helper()
	d := time.Until(at)
	if d <= 0 {
		return
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
		t.Fatalf("soak: %v", ctx.Err())
	}
}

// soakSnapshot waits (up to one more cycle) for the uplink's backlog to
// drain to what live traffic keeps in flight, then samples the process.
func soakSnapshot(ctx context.Context, t *testing.T, p *router.Pipeline, start time.Time, cycle time.Duration) soakSample {
	t.Helper()
	deadline := time.Now().Add(cycle)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		m := module(p, "cloud")
		if m.Phase == "up" && m.Spool != nil && m.Spool.Records < soakRate/2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("soak: the backlog did not drain within a cycle: uplink %s (%s), spool %+v", m.Phase, m.LastError, m.Spool)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("soak: %v", ctx.Err())
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return soakSample{
		at:         time.Since(start),
		goroutines: runtime.NumGoroutine(),
		heapInuse:  ms.HeapInuse,
		rss:        rssBytes(),
		emitted:    module(p, "gen").Out,
		spooled:    module(p, "cloud").Spool.Records,
	}
}
