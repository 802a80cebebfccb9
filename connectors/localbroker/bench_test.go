package localbroker

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/ferry-gateway/ferry/bus"
)

// BenchmarkDelivery publishes records through the broker to 1 and to 10
// subscribers (paho clients on loopback) at QoS 0 and 1, and reports records
// published per second and deliveries per second in total.
//
//	go test ./connectors/localbroker -run '^$' -bench Delivery -benchtime 200000x
func BenchmarkDelivery(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		for _, subs := range []int{1, 10} {
			b.Run(fmt.Sprintf("qos%d/subscribers%d", qos, subs), func(b *testing.B) {
				t := &testing.T{}
				br, _, _ := start(t, func(c *Config) {
					c.Users = nil
					c.Retain = false
					c.QoS = int(qos)
				})
				defer br.Stop(b.Context())
				var delivered atomic.Int64
				for i := 0; i < subs; i++ {
					cl := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + br.Addr("tcp")).SetClientID(fmt.Sprintf("s%d", i)).SetOrderMatters(false))
					if tok := cl.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						b.Fatal(tok.Error())
					}
					defer cl.Disconnect(0)
					if tok := cl.Subscribe("plant/#", qos, func(paho.Client, paho.Message) { delivered.Add(1) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
						b.Fatal(tok.Error())
					}
				}
				batch := &bus.Batch{}
				now := time.Now().UnixNano()
				for i := 0; i < 500; i++ {
					batch.Records = append(batch.Records, bus.Record{Source: "gen", Device: "press-1", Tag: fmt.Sprintf("t%d", i), Value: bus.Double(1.5), SourceTime: now, IngestTime: now})
				}
				b.ResetTimer()
				sent := 0
				for sent < b.N {
					if err := br.Write(b.Context(), batch); err != nil {
						b.Fatal(err)
					}
					sent += len(batch.Records)
				}
				want := int64(sent * subs)
				// Wait for the deliveries to stop arriving (benchmark only:
				// there is no event for "the broker is done").
				last, lastAt := int64(-1), time.Now()
				for delivered.Load() < want && time.Since(lastAt) < 500*time.Millisecond {
					if n := delivered.Load(); n != last {
						last, lastAt = n, time.Now()
					}
					time.Sleep(time.Millisecond)
				}
				elapsed := b.Elapsed().Seconds() - time.Since(lastAt).Seconds()
				b.StopTimer()
				b.ReportMetric(float64(sent)/elapsed, "records/s")
				b.ReportMetric(float64(delivered.Load())/elapsed, "deliveries/s")
				b.ReportMetric(100*float64(want-delivered.Load())/float64(want), "%dropped")
			})
		}
	}
}
