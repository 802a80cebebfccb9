package bus

import (
	"testing"
)

// The benchmarks use the typical telemetry batch (typicalBatch: one poll
// cycle, every record a different tag) and report records/s and
// bytes/record, the figures the bus is sized by; Encode and Decode also run
// on oneTagBatch for comparison. Run them on one core:
// go test -run '^$' -bench . -benchmem -cpu 1 ./bus/

const benchBatchLen = 500

func reportRecords(b *testing.B, iters, payloadLen int) {
	n := float64(iters * benchBatchLen)
	b.ReportMetric(n/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(payloadLen)/benchBatchLen, "bytes/record")
}

var benchBatches = []struct {
	name  string
	batch func(n int) *Batch
}{{"typical", typicalBatch}, {"one-tag", oneTagBatch}}

func BenchmarkEncode(b *testing.B) {
	for _, bb := range benchBatches {
		b.Run(bb.name, func(b *testing.B) {
			batch := bb.batch(benchBatchLen)
			buf := make([]byte, 0, 64<<10)
			iters := 0
			for b.Loop() {
				buf = batch.AppendAvro(buf[:0])
				iters++
			}
			reportRecords(b, iters, len(buf))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, bb := range benchBatches {
		b.Run(bb.name, func(b *testing.B) {
			p := bb.batch(benchBatchLen).AppendAvro(nil)
			var d Decoder
			var out Batch
			iters := 0
			for b.Loop() {
				out.Reset()
				if err := d.Decode(p, &out); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			reportRecords(b, iters, len(p))
		})
	}
}

// BenchmarkEncodeGoavro is the generic path the hand-written codec replaces.
// "records" is what encoding a Batch through goavro costs: the native form
// (a map per record, boxed fields) has to be built each time. "native" times
// goavro's encoder alone on a form built once.
func BenchmarkEncodeGoavro(b *testing.B) {
	batch := typicalBatch(benchBatchLen)
	for _, prebuilt := range []bool{false, true} {
		name := "records"
		if prebuilt {
			name = "native"
		}
		b.Run(name, func(b *testing.B) {
			native := toNative(batch)
			buf := make([]byte, 0, 64<<10)
			iters := 0
			for b.Loop() {
				if !prebuilt {
					native = toNative(batch)
				}
				var err error
				if buf, err = avroCodec.SingleFromNative(buf[:0], native); err != nil {
					b.Fatal(err)
				}
				iters++
			}
			reportRecords(b, iters, len(buf))
		})
	}
}

func BenchmarkDecodeGoavro(b *testing.B) {
	p := typicalBatch(benchBatchLen).AppendAvro(nil)
	iters := 0
	for b.Loop() {
		if _, _, err := avroCodec.NativeFromSingle(p); err != nil {
			b.Fatal(err)
		}
		iters++
	}
	reportRecords(b, iters, len(p))
}

func BenchmarkAppendJSON(b *testing.B) {
	batch := typicalBatch(benchBatchLen)
	buf := make([]byte, 0, 256<<10)
	iters := 0
	for b.Loop() {
		buf = batch.AppendJSONLines(buf[:0])
		iters++
	}
	reportRecords(b, iters, len(buf))
}
