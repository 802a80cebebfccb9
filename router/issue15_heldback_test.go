package router

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/router/outlet"
)

// TestDeadbandIsHeldBackNotDropped: a record a deadband does not pass on is
// counted as held_back on its route (the status page's "held back by
// transforms"), never as "dropped", which reads as loss (issue 15).
func TestDeadbandIsHeldBackNotDropped(t *testing.T) {
	c := load(t, `
connectors:
  gen: {type: generator, tags: [{name: t}]}
  out: {type: testcapture}
routes:
  - name: band
    from: gen
    where: value < 100
    transform:
      - deadband: 1
    to: out
`)
	reg := prometheus.NewRegistry()
	e := NewEngine(c.CompiledRoutes(), c.sourceTopics(), func(string) outlet.Queue { return nil }, reg, nil)
	var in bus.Batch
	// 10 passes; 10.5 and 10.9 are within the band; 12 passes; 500 is
	// filtered by where.
	for i, v := range []float64{10, 10.5, 10.9, 12, 500} {
		in.Records = append(in.Records, bus.Record{Source: "gen", Device: "d", Tag: "t", Value: bus.Double(v), Quality: bus.Good, SourceTime: int64(i + 1), Seq: uint64(i)})
	}
	e.Route("gen/out", &in)
	r := c.CompiledRoutes()[0]
	if r.Forwarded.Load() != 2 || r.HeldBack.Load() != 2 || r.Filtered.Load() != 1 {
		t.Fatalf("forwarded %d, held back %d, filtered %d; want 2, 2, 1", r.Forwarded.Load(), r.HeldBack.Load(), r.Filtered.Load())
	}
	vec := e.vec
	if got := testutil.ToFloat64(vec.WithLabelValues("band", "held_back")); got != 2 {
		t.Errorf(`ferry_route_records_total{result="held_back"} = %v, want 2`, got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == "dropped" {
					t.Errorf("%s has a result=dropped series", mf.GetName())
				}
			}
		}
	}
}
