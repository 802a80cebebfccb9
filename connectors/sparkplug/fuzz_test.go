package sparkplug

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
)

// FuzzDecode feeds arbitrary bytes to the payload decoder and to every
// step a host takes with what it returns: none may panic, and a payload
// that decodes re-encodes to one that decodes the same.
func FuzzDecode(f *testing.F) {
	ts := proto.Uint64(1700000000000)
	for _, p := range []*spb.Payload{
		{Timestamp: ts, Seq: proto.Uint64(0), Metrics: []*spb.Payload_Metric{
			{Name: proto.String(metricBdSeq), Datatype: proto.Uint32(uint32(spb.DataType_Int64)), Value: &spb.Payload_Metric_LongValue{LongValue: 7}},
			{Name: proto.String("a/b"), Alias: proto.Uint64(1), Timestamp: ts, Datatype: proto.Uint32(uint32(spb.DataType_Int16)),
				Value: &spb.Payload_Metric_IntValue{IntValue: 0xffff}, Properties: propertySet(bus.Uncertain, "bar", true)},
		}},
		{Timestamp: ts, Seq: proto.Uint64(255), Metrics: []*spb.Payload_Metric{
			{Alias: proto.Uint64(1), Timestamp: ts, IsHistorical: proto.Bool(true), Value: &spb.Payload_Metric_DoubleValue{DoubleValue: 1.5}},
			{Alias: proto.Uint64(2), IsNull: proto.Bool(true)},
			{Name: proto.String("s"), Datatype: proto.Uint32(uint32(spb.DataType_DataSet)), Value: &spb.Payload_Metric_DatasetValue{DatasetValue: &spb.Payload_DataSet{NumOfColumns: proto.Uint64(1)}}},
		}},
	} {
		b, _ := proto.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0xff, 0x0f}) // a metric claiming 4 GB
	f.Add([]byte{0x12, 0x02, 0x4a, 0x00})             // an empty property set
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Decode(data)
		if err != nil {
			return
		}
		for _, m := range p.Metrics {
			for dt := spb.DataType(0); dt <= spb.DataType_DateTimeArray; dt++ {
				if v, err := valueOf(m, dt); err == nil {
					var out spb.Payload_Metric
					_ = setValue(&out, dt, v)
				}
			}
			properties(m)
		}
		again, err := proto.Marshal(p)
		if err != nil {
			t.Fatalf("a decoded payload does not encode: %v", err)
		}
		q, err := Decode(again)
		if err != nil || !proto.Equal(p, q) {
			t.Fatalf("re-encoded payload differs: %v", err)
		}
	})
}
