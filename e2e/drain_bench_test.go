package e2e

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/cloud"
)

// BenchmarkDrainBacklog fills a sink's spool with a backlog of 1,000,000
// records (2,000 batches of 500, as a poll cycle makes them), then starts
// ferry with the MQTT uplink to mosquitto on loopback and measures how long
// the backlog takes to drain (every batch PUBACKed and released).
//
//	go test ./e2e -run '^$' -bench DrainBacklog -benchtime 1x
func BenchmarkDrainBacklog(b *testing.B) {
	for _, version := range []string{"5", "3.1.1"} {
		b.Run("mqtt"+version, func(b *testing.B) {
			broker := testbroker.Mosquitto(b)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				dir := b.TempDir()
				const batches, per = 2000, 500
				fillSpool(b, filepath.Join(dir, "spool", "cloud"), batches, per, 0)
				b.StartTimer()
				start := time.Now()
				p := pipeline(b, fmt.Sprintf(`
data_dir: %s
connectors:
  gen: {type: generator, interval: 1h, tags: [{name: t}]}
  cloud:
    type: mqtt
    url: tcp://%s
    version: "%s"
    store_and_forward: {window: 64}
routes:
  - {from: gen, to: cloud}
`, dir, broker, version))
				tick := time.NewTicker(time.Millisecond)
				for {
					if s := module(p, "cloud").Spool; s != nil && s.Records <= 1 { // the generator's one record may wait
						break
					}
					<-tick.C
				}
				tick.Stop()
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(elapsed.Seconds(), "s/1M-records")
				b.ReportMetric(float64(batches*per)/elapsed.Seconds(), "records/s")
				stop(b, p)
			}
		})
	}
}

// BenchmarkLiveDuringDrain fills the low-priority lane of the uplink's spool
// with a backlog of 1,000,000 records, then runs ferry with live data (10,000
// records/s on a higher-priority route) and reports how long the backlog
// takes to drain to the cloud (mochi, on loopback) and the live records'
// latency from sampling to arrival meanwhile.
//
//	go test ./e2e -run '^$' -bench LiveDuringDrain -benchtime 1x
func BenchmarkLiveDuringDrain(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c, err := cloud.Start(b.Context(), cloud.Config{HTTPAddr: "off"})
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		fillSpool(b, filepath.Join(dir, "spool", "cloud"), 2000, 500, 0)
		b.StartTimer()
		start := time.Now()
		p := pipeline(b, fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    devices: 10
    interval: 100ms
    tags: [{name: t, signal: sine, count: 100}]
  cloud:
    type: mqtt
    url: tcp://%s
    store_and_forward: {window: 64}
routes:
  - {from: gen, to: cloud, priority: 5}
`, dir, c.MQTTAddr()))
		tick := time.NewTicker(time.Millisecond)
		for c.Report().Sources["plc"].Unique < 1_000_000 {
			<-tick.C
		}
		drained := time.Since(start)
		tick.Stop()
		b.StopTimer()
		live := c.Report().Sources["gen"]
		stop(b, p)
		c.Close()
		b.ReportMetric(drained.Seconds(), "s-backlog-drain")
		b.ReportMetric(float64(live.LatencyP50.Microseconds())/1000, "ms-live-p50")
		b.ReportMetric(float64(live.LatencyP99.Microseconds())/1000, "ms-live-p99")
	}
}

// fillSpool writes batches of per records into a sink spool at priority.
func fillSpool(b testing.TB, dir string, batches, per, priority int) {
	sp, err := spool.Open(spool.Config{Dir: dir, Quota: 4 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	for n := 0; n < batches; n++ {
		var bt bus.Batch
		for k := 0; k < per; k++ {
			bt.Records = append(bt.Records, bus.Record{Source: "plc", Device: "press-1", Tag: fmt.Sprintf("line1/t%d", k),
				Value: bus.Double(float64(k)), SourceTime: now, IngestTime: now, Seq: uint64(n*per + k), Unit: "C"})
		}
		m := bus.NewMessage(&bt)
		m.Metadata.Set(spool.MetaPriority, fmt.Sprint(priority))
		if err := sp.Publish(router.SinkTopic("cloud"), m); err != nil {
			b.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		b.Fatal(err)
	}
}
