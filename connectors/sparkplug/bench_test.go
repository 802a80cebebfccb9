package sparkplug

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
)

// benchRecords is one poll of a device: n double tags with a unit, as the
// modbus and OPC UA connectors emit them.
func benchRecords(n int) ([]bus.Record, []*metric) {
	now := time.Now().UnixNano()
	recs := make([]bus.Record, n)
	ms := make([]*metric, n)
	for i := range recs {
		recs[i] = bus.Record{Source: "press", Device: "press-7", Tag: fmt.Sprintf("line1/zone%d/temperature", i), Value: bus.Double(200 + float64(i)/7),
			Quality: bus.Good, SourceTime: now, IngestTime: now, Unit: "°C", Seq: uint64(i)}
		ms[i] = &metric{name: recs[i].Tag, alias: uint64(i + 1), dt: spb.DataType_Double}
	}
	return recs, ms
}

func ddata(recs []bus.Record, ms []*metric) []byte {
	p := &spb.Payload{Timestamp: proto.Uint64(msOf(time.Now().UnixNano())), Seq: proto.Uint64(42), Metrics: make([]*spb.Payload_Metric, 0, len(recs))}
	for i := range recs {
		pm, _ := dataMetric(ms[i], &recs[i], 0)
		p.Metrics = append(p.Metrics, pm)
	}
	b, _ := proto.Marshal(p)
	return b
}

// BenchmarkDDATA encodes one DDATA of a 100-tag poll and reports bytes per
// value next to the same records as ferry's Avro and as JSON lines.
//
//	go test -run XXX -bench DDATA -benchmem ./connectors/sparkplug/
func BenchmarkDDATA(b *testing.B) {
	recs, ms := benchRecords(100)
	batch := bus.Batch{Records: recs}
	avro := batch.AppendAvro(nil)
	json := batch.AppendJSONLines(nil)
	var size int
	b.ResetTimer()
	for b.Loop() {
		size = len(ddata(recs, ms))
	}
	n := float64(len(recs))
	b.ReportMetric(float64(size)/n, "B/value")
	b.ReportMetric(float64(len(avro))/n, "avro-B/value")
	b.ReportMetric(float64(len(json))/n, "json-B/value")
	b.ReportMetric(n*float64(b.N)/b.Elapsed().Seconds(), "values/s")
}
