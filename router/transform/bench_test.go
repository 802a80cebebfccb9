package transform_test

import (
	"strconv"
	"testing"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/router/transform"
	"github.com/ferry-gateway/ferry/router/where"
)

// benchRecords is 1024 readings over 64 series whose values wander, so that
// the deadband drops some and forwards others as it would on a plant.
func benchRecords() []bus.Record {
	recs := make([]bus.Record, 1024)
	for i := range recs {
		recs[i] = bus.Record{
			Source: "opc", Device: "press1", Tag: "line" + strconv.Itoa(i%2+1) + "/tag" + strconv.Itoa(i%64),
			Value: bus.Double(float64(i%13) * 0.4), Quality: bus.Quality(i % 7 / 6), Seq: uint64(i),
		}
	}
	return recs
}

func benchChain(b *testing.B, chain transform.Next) {
	recs := benchRecords()
	// One scratch record, assigned per iteration: Scale rewrites values in
	// place, and taking the address of a fresh local would allocate.
	var r bus.Record
	for i := range recs { // warm the state
		r = recs[i]
		chain(&r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r = recs[i&(len(recs)-1)]
		chain(&r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
}

func keep(*bus.Record) bool { return true }

func BenchmarkChain(b *testing.B) {
	benchChain(b, transform.Chain(keep, transform.Scale(0.1, -4), transform.Deadband(0.5, 0)))
}

// BenchmarkRoute is a route's whole per-record path: a where filter of the
// shape of BenchmarkWhere's that lets most records through, then scale and
// deadband.
func BenchmarkRoute(b *testing.B) {
	p, err := where.Compile(`quality == "GOOD" && value >= 0 && tag startsWith "line"`)
	if err != nil {
		b.Fatal(err)
	}
	benchChain(b, transform.Chain(keep, transform.Filter(p), transform.Scale(0.1, -4), transform.Deadband(0.5, 0)))
}
