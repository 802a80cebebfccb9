package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/bus/spool"
	"github.com/ferry-gateway/ferry/internal/testbroker"
	"github.com/ferry-gateway/ferry/router"
	"github.com/ferry-gateway/ferry/sim/flaky"
)

// BenchmarkDrainWindow drains a backlog of poll-cycle batches (40 records
// over 10 devices) through the MQTT uplink with a per-device topic, so each
// batch is 10 PUBLISHes, to mosquitto on loopback and across a link with
// 20 ms round trip, for several spool windows and the default
// (store_and_forward: true). It reports records/s drained within a few
// seconds: the figure behind the default window (issue 15).
//
//	go test ./e2e -run '^$' -bench DrainWindow -benchtime 1x
//
// FERRY_BENCH_BROKER=host:port drains to that broker instead (a stock
// mosquitto.conf, say) of the test's mosquitto; FERRY_BENCH_MQTT=3.1.1
// uses that protocol version instead of 5.
func BenchmarkDrainWindow(b *testing.B) {
	broker := os.Getenv("FERRY_BENCH_BROKER")
	if broker == "" {
		broker = testbroker.Mosquitto(b)
	}
	version := os.Getenv("FERRY_BENCH_MQTT")
	if version == "" {
		version = "5"
	}
	for _, rtt := range []time.Duration{0, 20 * time.Millisecond} {
		for _, window := range []string{"1", "4", "16", "64", "256", "default"} {
			b.Run(fmt.Sprintf("rtt%s/window_%s", rtt, window), func(b *testing.B) {
				addr := broker
				if rtt > 0 {
					px, err := flaky.Start(b.Context(), flaky.Config{Target: broker})
					if err != nil {
						b.Fatal(err)
					}
					defer px.Close()
					px.SetLatency(rtt / 2)
					addr = px.Addr()
				}
				sf := "true"
				if window != "default" {
					sf = "{window: " + window + "}"
				}
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dir := b.TempDir()
					const batches, devices, per = 4000, 10, 4
					fillDevices(b, filepath.Join(dir, "spool", "cloud"), batches, devices, per)
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
    topic: "ferry/{site}/{device}"
    store_and_forward: %s
routes:
  - {from: gen, to: cloud}
`, dir, addr, version, sf))
					total := int64(batches * devices * per)
					var left int64
					deadline := time.Now().Add(5 * time.Second)
					tick := time.NewTicker(5 * time.Millisecond)
					for time.Now().Before(deadline) {
						if s := module(p, "cloud").Spool; s != nil {
							if left = int64(s.Records); left <= 1 {
								break
							}
						}
						<-tick.C
					}
					tick.Stop()
					elapsed := time.Since(start)
					b.StopTimer()
					b.ReportMetric(float64(total-left)/elapsed.Seconds(), "records/s")
					b.ReportMetric(float64(total-left)/float64(devices*per)/elapsed.Seconds(), "batches/s")
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					_ = p.Stop(ctx)
					cancel()
				}
			})
		}
	}
}

// fillDevices writes a backlog of batches, each with per records of each of
// devices devices, into the spool at dir.
func fillDevices(b testing.TB, dir string, batches, devices, per int) {
	sp, err := spool.Open(spool.Config{Dir: dir, Quota: 4 << 30}, nil)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	var seq uint64
	for n := 0; n < batches; n++ {
		var bt bus.Batch
		for d := 0; d < devices; d++ {
			for k := 0; k < per; k++ {
				seq++
				bt.Records = append(bt.Records, bus.Record{Source: "plc", Device: fmt.Sprintf("press-%d", d), Tag: fmt.Sprintf("t%d", k),
					Value: bus.Double(float64(k)), SourceTime: now, IngestTime: now, Seq: seq, Unit: "C"})
			}
		}
		m := bus.NewMessage(&bt)
		m.Metadata.Set(spool.MetaPriority, "0")
		if err := sp.Publish(router.SinkTopic("cloud"), m); err != nil {
			b.Fatal(err)
		}
	}
	if err := sp.Close(); err != nil {
		b.Fatal(err)
	}
}
