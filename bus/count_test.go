package bus

import (
	"errors"
	"testing"
)

// semanticOnly are malformed fixtures whose structure is sound: only a
// decoder that reads the values can tell, so CountRecords accepts them.
var semanticOnly = map[string]bool{
	"boolean byte 2":       true,
	"quality 3":            true,
	"status negative":      true,
	"status above uint32":  true,
	"time past 2262":       true,
	"time delta overflows": true,
	"ingest before 1678":   true,

	"time deltas add up past 2262":     true,
	"ingest deltas add up before 1678": true,

	"tag suffix keeps more than the previous tag": true,
	"tag suffix keeps from nothing":               true,
	"tag suffix keep negative":                    true,
}

func TestCountRecordsFixtures(t *testing.T) {
	for _, fx := range payloadFixtures() {
		t.Run(fx.name, func(t *testing.T) {
			n, err := CountRecords(fx.payload)
			switch {
			case fx.err == nil || semanticOnly[fx.name]:
				if err != nil {
					t.Fatal(err)
				}
				if fx.err == nil && n != len(fx.want) {
					t.Errorf("count = %d, want %d", n, len(fx.want))
				}
			case !errors.Is(err, fx.err):
				t.Errorf("err = %v, want %v", err, fx.err)
			}
		})
	}
}

func TestCountRecordsRoundTrip(t *testing.T) {
	for _, c := range roundTripCases() {
		t.Run(c.name, func(t *testing.T) {
			n, err := CountRecords(c.batch.AppendAvro(nil))
			if err != nil {
				t.Fatal(err)
			}
			if n != c.batch.Len() {
				t.Errorf("count = %d, want %d", n, c.batch.Len())
			}
		})
	}
}

// FuzzCountRecords checks that the count agrees with a full decode on every
// payload the decoder accepts.
func FuzzCountRecords(f *testing.F) {
	for _, fx := range payloadFixtures() {
		f.Add(fx.payload)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		n, cerr := CountRecords(p)
		var b Batch
		if err := DecodeBatch(p, &b); err == nil {
			if cerr != nil || n != b.Len() {
				t.Fatalf("CountRecords = %d, %v; Decode gave %d records", n, cerr, b.Len())
			}
		}
	})
}

func BenchmarkCountRecords(b *testing.B) {
	p := typicalBatch(500).AppendAvro(nil)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if n, err := CountRecords(p); err != nil || n != 500 {
			b.Fatal(n, err)
		}
	}
	b.ReportMetric(float64(b.N)*500/b.Elapsed().Seconds(), "records/s")
}
