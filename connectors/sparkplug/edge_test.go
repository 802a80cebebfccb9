package sparkplug_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/connectors/simulator"
	"github.com/ferry-gateway/ferry/connectors/sparkplug"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
)

func edgeConfig(dir, broker, modbus, extra string) string {
	return fmt.Sprintf(`
data_dir: %s
connectors:
  sim:
    type: simulator
    modbus: [{addr: %s}]
  press:
    type: modbus
    devices:
      - name: press-7
        endpoint: tcp://%s
        poll_interval: 50ms
        tags:
          - {name: oven/setpoint, area: holding, address: 5, type: uint16, scale: 0.1, writable: true}
          - {name: line/status, area: holding, address: 4, type: uint16}
  gen:
    type: generator
    devices: 1
    device_prefix: line-
    interval: 5ms
    tags:
      - {name: parts, signal: counter}
      - {name: temp, signal: sine, min: 20, max: 80, period: 10s, unit: "°C"}
  spb:
    type: sparkplug
    url: tcp://%s
    group_id: plant
    edge_node_id: gw1
%s
routes:
  - {from: press, to: spb}
  - {from: gen, to: spb}
`, dir, modbus, modbus, broker, extra)
}

// TestEdgeNode runs the edge node's life against each broker: births with
// bdSeq, DDATA by alias, seq wrapping at 255, a rebirth on NCMD, a DCMD
// that changes a register in sim/modbus, and NDEATH with the bdSeq of the
// births when ferry stops.
func TestEdgeNode(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			o := observe(t, addr, "spBv1.0/plant/#")
			mb := freeAddr(t)
			p := pipeline(t, edgeConfig(t.TempDir(), addr, mb, ""))
			stopped := false
			defer func() {
				if !stopped {
					stop(t, p)
				}
			}()

			nb := o.next(t, 20*time.Second, "NBIRTH", verb(sparkplug.NBIRTH))
			if nb.p.GetSeq() != 0 || nb.qos != 0 {
				t.Fatalf("NBIRTH seq %d qos %d, want 0 and 0", nb.p.GetSeq(), nb.qos)
			}
			bd := metricByName(nb.p, "bdSeq")
			if bd == nil || bd.GetDatatype() != uint32(spb.DataType_Int64) {
				t.Fatalf("NBIRTH has no Int64 bdSeq: %v", nb.p)
			}
			bdSeq := bd.GetLongValue()
			if rb := metricByName(nb.p, "Node Control/Rebirth"); rb == nil || rb.GetBooleanValue() || rb.Alias != nil ||
				rb.GetDatatype() != uint32(spb.DataType_Boolean) {
				t.Fatalf("NBIRTH rebirth control: %v", rb)
			}

			// Every message after the NBIRTH has the next seq, wrapping
			// 255 → 0; DDATA carries aliases from the DBIRTHs, no names.
			aliases := map[string]map[uint64]*spb.Payload_Metric{}
			want := uint64(1)
			wrapped := false
			for !wrapped {
				m := o.next(t, 20*time.Second, "message", func(seen) bool { return true })
				if m.p.GetSeq() != want {
					t.Fatalf("%s: seq %d, want %d", m, m.p.GetSeq(), want)
				}
				if m.p.Timestamp == nil {
					t.Fatalf("%s has no timestamp", m)
				}
				switch m.topic.Verb {
				case sparkplug.DBIRTH:
					aliases[m.topic.Device] = map[uint64]*spb.Payload_Metric{}
					for _, x := range m.p.Metrics {
						if x.Name == nil || x.Alias == nil || x.Datatype == nil || x.Timestamp == nil {
							t.Fatalf("DBIRTH metric without name, alias, datatype or timestamp: %v", x)
						}
						aliases[m.topic.Device][x.GetAlias()] = x
					}
				case sparkplug.DDATA:
					for _, x := range m.p.Metrics {
						if x.Name != nil || x.Datatype != nil {
							t.Fatalf("DDATA metric with a name or datatype: %v", x)
						}
						if aliases[m.topic.Device][x.GetAlias()] == nil {
							t.Fatalf("DDATA of %s: alias %d is not in its DBIRTH", m.topic.Device, x.GetAlias())
						}
					}
				default:
					t.Fatalf("unexpected %s", m)
				}
				wrapped = want == 0
				want = (want + 1) % 256
			}
			temp := metricByName(&spb.Payload{Metrics: values(aliases["line-1"])}, "temp")
			if temp == nil || temp.GetDatatype() != uint32(spb.DataType_Double) {
				t.Fatalf("line-1/temp in DBIRTH: %v", temp)
			}
			if ps := temp.GetProperties(); ps == nil || len(ps.Keys) != 2 || ps.Keys[1] != "engUnit" || ps.Values[1].GetStringValue() != "°C" ||
				ps.Keys[0] != "Quality" || ps.Values[0].GetIntValue() != 192 {
				t.Fatalf("line-1/temp properties: %v", temp.GetProperties())
			}

			// A rebirth request: a full birth, same bdSeq, seq from 0.
			o.publish(t, "spBv1.0/plant/NCMD/gw1", 0, false, mustMarshal(t, &spb.Payload{Timestamp: nowMS(), Metrics: []*spb.Payload_Metric{{
				Name: proto.String("Node Control/Rebirth"), Datatype: proto.Uint32(uint32(spb.DataType_Boolean)),
				Value: &spb.Payload_Metric_BooleanValue{BooleanValue: true}}}}))
			re := o.next(t, 20*time.Second, "NBIRTH after NCMD", verb(sparkplug.NBIRTH))
			if re.p.GetSeq() != 0 || metricByName(re.p, "bdSeq").GetLongValue() != bdSeq {
				t.Fatalf("rebirth: seq %d bdSeq %d, want 0 and %d", re.p.GetSeq(), metricByName(re.p, "bdSeq").GetLongValue(), bdSeq)
			}
			births := map[string]*spb.Payload{}
			for len(births) < 2 {
				m := o.next(t, 20*time.Second, "DBIRTHs after the rebirth", func(s seen) bool { return true })
				if m.topic.Verb != sparkplug.DBIRTH {
					t.Fatalf("%s before every DBIRTH of the rebirth", m)
				}
				births[m.topic.Device] = m.p
			}

			// A DCMD through the write-back path changes the register; the
			// written value comes back as DDATA.
			sp := metricByName(births["press-7"], "oven/setpoint")
			if sp == nil {
				t.Fatalf("press-7 DBIRTH: %v", births["press-7"])
			}
			o.publish(t, "spBv1.0/plant/DCMD/gw1/press-7", 0, false, mustMarshal(t, &spb.Payload{Timestamp: nowMS(), Metrics: []*spb.Payload_Metric{{
				Alias: proto.Uint64(sp.GetAlias()), Value: &spb.Payload_Metric_DoubleValue{DoubleValue: 23.5}}}}))
			o.next(t, 20*time.Second, "DDATA of the written setpoint", func(s seen) bool {
				if s.topic.Verb != sparkplug.DDATA || s.topic.Device != "press-7" {
					return false
				}
				for _, x := range s.p.Metrics {
					if x.GetAlias() == sp.GetAlias() && x.GetDoubleValue() == 23.5 {
						return true
					}
				}
				return false
			})
			sim := p.Config().Module("sim").Connector.(*simulator.Simulator).ModbusSims()[0]
			if got := sim.Unit(1).HoldingRegisters().Get(5, 1)[0]; got != 235 {
				t.Fatalf("register 5 = %d, want 235", got)
			}
			// A read-only tag is refused by the modbus connector and stays.
			st := metricByName(births["press-7"], "line/status")
			before := sim.Unit(1).HoldingRegisters().Get(4, 1)[0]
			o.publish(t, "spBv1.0/plant/DCMD/gw1/press-7", 0, false, mustMarshal(t, &spb.Payload{Timestamp: nowMS(), Metrics: []*spb.Payload_Metric{{
				Alias: proto.Uint64(st.GetAlias()), Value: &spb.Payload_Metric_IntValue{IntValue: uint32(before) + 9}}}}))

			waitEvent(t, p, "refused", "line/status")

			// A clean stop: NDEATH with the bdSeq of the births.
			stop(t, p)
			stopped = true
			nd := o.next(t, 20*time.Second, "NDEATH", verb(sparkplug.NDEATH))
			if nd.p.Seq != nil || len(nd.p.Metrics) != 1 || metricByName(nd.p, "bdSeq").GetLongValue() != bdSeq {
				t.Fatalf("NDEATH: %v, want only bdSeq %d and no seq", nd.p, bdSeq)
			}
			if got := sim.Unit(1).HoldingRegisters().Get(4, 1)[0]; got != before {
				t.Fatalf("a DCMD of a read-only tag reached the device: %d → %d", before, got)
			}
		})
	}
}

func values(m map[uint64]*spb.Payload_Metric) []*spb.Payload_Metric {
	var out []*spb.Payload_Metric
	for _, x := range m {
		out = append(out, x)
	}
	return out
}
