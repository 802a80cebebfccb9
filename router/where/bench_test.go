package where

import (
	"testing"

	"github.com/ferry-gateway/ferry/bus"
)

func benchRecords() []bus.Record {
	recs := make([]bus.Record, 256)
	tags := []string{"line1/temp", "line1/pressure", "line2/temp", "line3/speed"}
	for i := range recs {
		recs[i] = bus.Record{
			Source: "opc", Device: "press1", Tag: tags[i%len(tags)],
			Value: bus.Double(float64(i % 20)), Quality: bus.Quality(i % 3), Seq: uint64(i),
		}
	}
	return recs
}

func benchPredicate(b *testing.B, src string, wantFast bool) {
	c, err := compile(src)
	if err != nil {
		b.Fatal(err)
	}
	if c.fast != wantFast {
		b.Fatalf("fast = %v, want %v", c.fast, wantFast)
	}
	recs := benchRecords()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		if c.pred(&recs[i&(len(recs)-1)]) {
			n++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/record")
	_ = n
}

func BenchmarkWhere(b *testing.B) {
	benchPredicate(b, `quality == "GOOD" && value > 10 && tag startsWith "line1/"`, true)
}

// BenchmarkWhereVM is the same filter through expr's VM, for comparison.
func BenchmarkWhereVM(b *testing.B) {
	benchPredicate(b, `quality == "GOOD" && value > 10 && lower(tag) startsWith "line1/"`, false)
}
