package sparkplug_test

import (
	"context"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/sparkplug"
	"github.com/ferry-gateway/ferry/internal/conf"
)

// TestDeviceTimeout: with device_timeout, a device whose records stop (its
// source stopped or crashed without reporting BAD) gets its DDEATH while
// another device goes on reporting and stays born; its next record births
// it again, and no DDATA goes out for it in between.
func TestDeviceTimeout(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			o := observe(t, addr, "spBv1.0/plant/#")
			edge := &sparkplug.Edge{EdgeConfig: sparkplug.EdgeConfig{GroupID: "plant", EdgeNodeID: "gw1", DeviceTimeout: conf.Duration(400 * time.Millisecond)}}
			edge.URL = "tcp://" + addr
			env, _ := startConn(t, "edge", edge)
			waitUp(t, env)

			n := int64(0)
			write := func(devices ...string) {
				t.Helper()
				var batch bus.Batch
				for _, d := range devices {
					n++
					batch.Records = append(batch.Records, bus.Record{Device: d, Tag: "count", Value: bus.Long(n), Quality: bus.Good, SourceTime: time.Now().UnixNano(), IngestTime: time.Now().UnixNano()})
				}
				if err := edge.Write(t.Context(), &batch); err != nil {
					t.Fatal(err)
				}
			}
			write("quiet", "busy")
			o.next(t, 10*time.Second, "DBIRTH of quiet", func(s seen) bool { return s.topic.Verb == sparkplug.DBIRTH && s.topic.Device == "quiet" })
			from := o.mark()

			// busy reports every 50 ms; quiet says nothing.
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
						if err := edge.Write(ctx, &bus.Batch{Records: []bus.Record{{Device: "busy", Tag: "count", Value: bus.Long(1), Quality: bus.Good, SourceTime: time.Now().UnixNano()}}}); err != nil && ctx.Err() == nil {
							t.Error(err)
						}
					}
				}
			}()
			dd := o.next(t, 10*time.Second, "DDEATH of quiet", func(s seen) bool { return s.topic.Verb == sparkplug.DDEATH })
			cancel()
			<-done
			if dd.topic.Device != "quiet" {
				t.Fatalf("first DDEATH is %s's, want quiet's", dd.topic.Device)
			}
			for _, s := range o.since(from) {
				if s.topic.Device == "quiet" && s.topic.Verb != sparkplug.DDEATH {
					t.Errorf("%s while quiet was silent", s)
				}
				if s.topic.Device == "busy" && s.topic.Verb == sparkplug.DDEATH {
					t.Errorf("busy, reporting every 50 ms, got a DDEATH")
				}
			}

			write("quiet")
			rb := o.next(t, 10*time.Second, "quiet's next message", func(s seen) bool { return s.topic.Device == "quiet" })
			if rb.topic.Verb != sparkplug.DBIRTH || metricByName(rb.p, "count") == nil {
				t.Fatalf("quiet's next message is %s, want a DBIRTH with count", rb)
			}
		})
	}
}
