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
				sp, err := spool.Open(spool.Config{Dir: filepath.Join(dir, "spool", "cloud"), Quota: 4 << 30}, nil)
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
					if err := sp.Publish(router.SinkTopic("cloud"), bus.NewMessage(&bt)); err != nil {
						b.Fatal(err)
					}
				}
				if err := sp.Close(); err != nil {
					b.Fatal(err)
				}
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
