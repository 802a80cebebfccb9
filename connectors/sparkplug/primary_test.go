package sparkplug_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ferry-gateway/ferry/connectors/sparkplug"
)

func stateMsg(online bool, ts time.Time) []byte {
	return fmt.Appendf(nil, `{"online": %t, "timestamp": %d}`, online, ts.UnixMilli())
}

// TestPrimaryHostOffline takes the primary host offline for 10 s: the
// node leaves (NDEATH), the spool keeps the records, and once the host is
// back every record of the window arrives after the births, flagged
// is_historical, with no counter value missing; live data follows.
func TestPrimaryHostOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s outage per broker")
	}
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			o := observe(t, addr, "spBv1.0/plant/#")
			o.publish(t, "spBv1.0/STATE/scada", 1, true, stateMsg(true, time.Now()))
			p := pipeline(t, fmt.Sprintf(`
data_dir: %s
connectors:
  gen:
    type: generator
    devices: 1
    device_prefix: line-
    interval: 20ms
    tags: [{name: parts, signal: counter}]
  spb:
    type: sparkplug
    url: tcp://%s
    group_id: plant
    edge_node_id: gw1
    primary_host_id: scada
    store_and_forward: true
routes:
  - {from: gen, to: spb}
`, t.TempDir(), addr))
			defer stop(t, p)

			nb := o.next(t, 20*time.Second, "NBIRTH", verb(sparkplug.NBIRTH))
			bd := metricByName(nb.p, "bdSeq").GetLongValue()
			for range 5 {
				o.next(t, 20*time.Second, "live DDATA", verb(sparkplug.DDATA))
			}

			offAt := time.Now()
			o.publish(t, "spBv1.0/STATE/scada", 1, true, stateMsg(false, offAt))
			nd := o.next(t, 20*time.Second, "NDEATH when the host went offline", verb(sparkplug.NDEATH))
			if got := metricByName(nd.p, "bdSeq").GetLongValue(); got != bd {
				t.Fatalf("NDEATH bdSeq %d, want %d", got, bd)
			}
			start := o.mark()
			time.Sleep(10 * time.Second) // the outage itself, not a wait for an event
			onAt := time.Now()
			if n := len(o.since(start)); n != 0 {
				t.Fatalf("%d messages while the primary host was offline: %v", n, o.since(start))
			}
			o.publish(t, "spBv1.0/STATE/scada", 1, true, stateMsg(true, onAt))

			nb2 := o.next(t, 20*time.Second, "NBIRTH when the host came back", verb(sparkplug.NBIRTH))
			if got := metricByName(nb2.p, "bdSeq").GetLongValue(); got != (bd+1)%256 || nb2.p.GetSeq() != 0 {
				t.Fatalf("new session: bdSeq %d seq %d, want %d and 0", got, nb2.p.GetSeq(), (bd+1)%256)
			}
			db := o.next(t, 20*time.Second, "DBIRTH", verb(sparkplug.DBIRTH))
			alias := metricByName(db.p, "parts").GetAlias()
			var last int64 = -1
			if m := metricByName(db.p, "parts"); m != nil {
				last = int64(m.GetLongValue())
			}
			historical, live := 0, 0
			for live < 20 {
				m := o.next(t, 30*time.Second, "DDATA after the outage", verb(sparkplug.DDATA))
				for _, x := range m.p.Metrics {
					if x.GetAlias() != alias {
						continue
					}
					v, ts := int64(x.GetLongValue()), time.UnixMilli(int64(x.GetTimestamp()))
					if last >= 0 && v > last+1 {
						t.Fatalf("parts jumped from %d to %d: records lost", last, v)
					}
					last = max(last, v)
					switch {
					case x.GetIsHistorical():
						if live > 0 {
							t.Fatalf("historical parts=%d after live data", v)
						}
						historical++
					default:
						if !ts.Before(offAt) && ts.Before(onAt) {
							t.Fatalf("parts=%d of %s, inside the outage, without is_historical", v, ts.Format(time.StampMilli))
						}
						live++
					}
				}
			}
			// 10 s at 20 ms: about 500 records were held; a slow machine
			// generates fewer, never none.
			if historical < 100 {
				t.Fatalf("%d historical records after a 10 s outage at 20 ms", historical)
			}
			t.Logf("%d historical records, then live", historical)
		})
	}
}
