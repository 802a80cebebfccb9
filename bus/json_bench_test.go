package bus

import (
	"strconv"
	"testing"
)

// BenchmarkJSONLines times the JSON lines of a batch into a reused buffer:
// "poll" is one Modbus poll of 1,000 registers (every record shares its
// timestamps, as a poll's do), "typical" the bus fixture (every record a
// timestamp of its own). It uses only Batch.AppendJSONLines, so the same
// file runs on older commits for a before/after comparison (issue 14):
//
//	go test -run '^$' -bench JSONLines -benchmem -count 3 -cpu 1 ./bus/
func BenchmarkJSONLines(b *testing.B) {
	for _, c := range []struct {
		name  string
		batch *Batch
	}{{"poll", pollBatch(1000)}, {"typical", typicalBatch(1000)}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 512<<10)
			for b.Loop() {
				buf = c.batch.AppendJSONLines(buf[:0])
			}
			n := float64(b.N * c.batch.Len())
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/record")
			b.ReportMetric(float64(len(buf))/float64(c.batch.Len()), "bytes/record")
		})
	}
}

// pollBatch is one poll of n holding registers of one Modbus device: one
// source and device, a tag per register, one read time, one ingest time.
func pollBatch(n int) *Batch {
	b := &Batch{Records: make([]Record, n)}
	for i := range b.Records {
		b.Records[i] = Record{
			Source:     "plc1",
			Device:     "press-01",
			Tag:        "hr/" + strconv.Itoa(40001+i),
			Value:      Double(20 + float64(i%100)*0.137),
			Quality:    Good,
			SourceTime: t0,
			IngestTime: t0 + 180_000,
			Seq:        1_000_000 + uint64(i),
		}
	}
	return b
}
