package sparkplug_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-gateway/ferry/bus"
	"github.com/ferry-gateway/ferry/connectors"
	"github.com/ferry-gateway/ferry/connectors/sparkplug"
	"github.com/ferry-gateway/ferry/connectors/sparkplug/spb"
	"github.com/ferry-gateway/ferry/internal/conf"
	"github.com/ferry-gateway/ferry/internal/waitfor"
)

// startConn starts a connector on an Env of its own; a source's batches
// come out of the returned channel.
func startConn(t *testing.T, name string, c connectors.Connector) (*connectors.Env, <-chan *message.Message) {
	t.Helper()
	if d, ok := c.(connectors.Defaulter); ok {
		d.SetDefaults()
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := connectors.EnvConfig{Name: name, Site: "s", DataDir: t.TempDir(), Sink: true}
	var msgs <-chan *message.Message
	if src, ok := c.(connectors.Source); ok {
		ps := bus.NewMemory(nil)
		cfg.Publisher, cfg.Outputs, cfg.Sink = ps, src.Outputs(), false
		msgs, _ = ps.Subscribe(t.Context(), name+"/out")
		t.Cleanup(func() { _ = ps.Close() })
	}
	env, err := connectors.NewEnv(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
		if err := env.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return env, msgs
}

func waitUp(t *testing.T, env *connectors.Env) {
	t.Helper()
	waitfor.Until(t, 20*time.Second, func() bool { return env.State().Phase() == connectors.PhaseUp },
		func() string { return "phase " + string(env.State().Phase()) })
}

// collect reads records from msgs until n arrived.
func collect(t *testing.T, msgs <-chan *message.Message, n int, keep func(bus.Record) bool) []bus.Record {
	t.Helper()
	var out []bus.Record
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case m := <-msgs:
			var b bus.Batch
			if err := new(bus.Decoder).DecodeMessage(m, &b); err != nil {
				t.Fatal(err)
			}
			m.Ack()
			for _, r := range b.Records {
				if keep == nil || keep(r) {
					out = append(out, r)
				}
			}
		case <-deadline:
			t.Fatalf("%d of %d records: %+v", len(out), n, out)
		}
	}
	return out
}

// TestHostIngestRoundTrip feeds ferry's own edge node to ferry's host
// ingest: every record comes back with the same value, kind, quality,
// unit and (millisecond) timestamp, through births and DDATA alike.
func TestHostIngestRoundTrip(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			host := &sparkplug.Host{HostConfig: sparkplug.HostConfig{Groups: []string{"plant"}, Device: "{device}", BatchInterval: conf.Duration(time.Millisecond)}}
			host.URL = "tcp://" + addr
			henv, msgs := startConn(t, "host", host)
			waitUp(t, henv)
			edge := &sparkplug.Edge{EdgeConfig: sparkplug.EdgeConfig{GroupID: "plant", EdgeNodeID: "gw1", Types: []sparkplug.TypeRule{
				{Tag: "d1/i32", Type: "Int32"}, {Tag: "d1/u16", Type: "UInt16"}, {Tag: "d1/when", Type: "DateTime"}, {Tag: "d1/f", Type: "Float"},
			}}}
			edge.URL = "tcp://" + addr
			eenv, _ := startConn(t, "edge", edge)
			waitUp(t, eenv)

			base := time.Now().Truncate(time.Millisecond).UnixNano()
			rec := func(tag string, v bus.Value, q bus.Quality, dt int64, unit string) bus.Record {
				return bus.Record{Device: "d1", Tag: tag, Value: v, Quality: q, SourceTime: base + dt*int64(time.Millisecond), IngestTime: time.Now().UnixNano(), Unit: unit}
			}
			first := []bus.Record{
				rec("long", bus.Long(-42), bus.Good, 0, "pcs"),
				rec("double", bus.Double(3.25), bus.Good, 1, "°C"),
				rec("bool", bus.Bool(true), bus.Good, 2, ""),
				rec("string", bus.String("héllo"), bus.Good, 3, ""),
				rec("bytes", bus.Bytes([]byte{0, 1, 0xff}), bus.Good, 4, ""),
				rec("i32", bus.Long(-123456), bus.Uncertain, 5, ""),
				rec("u16", bus.Long(65535), bus.Good, 6, ""),
				rec("when", bus.Long(base/1e6), bus.Good, 7, ""),
				rec("f", bus.Double(0.5), bus.Good, 8, ""),
			}
			second := []bus.Record{
				rec("long", bus.Long(1<<40), bus.Good, 10, "pcs"),
				rec("double", bus.Double(-1e-9), bus.Bad, 11, "°C"),
				rec("bool", bus.Bool(false), bus.Good, 12, ""),
				rec("string", bus.String(""), bus.Good, 13, ""),
				rec("i32", bus.Long(7), bus.Good, 14, ""),
				rec("long", bus.Long(3), bus.Good, 15, "pcs"),
			}
			for _, batch := range [][]bus.Record{first, second} {
				if err := edge.Write(t.Context(), &bus.Batch{Records: append([]bus.Record(nil), batch...)}); err != nil {
					t.Fatal(err)
				}
			}
			want := append(append([]bus.Record(nil), first...), second...)
			got := collect(t, msgs, len(want), nil)
			key := func(r bus.Record) string { return r.Tag + "@" + time.Unix(0, r.SourceTime).Format(time.RFC3339Nano) }
			sort.Slice(want, func(i, j int) bool { return key(want[i]) < key(want[j]) })
			sort.Slice(got, func(i, j int) bool { return key(got[i]) < key(got[j]) })
			units := map[string]string{"long": "pcs", "double": "°C"}
			for i := range want {
				w, g := want[i], got[i]
				if g.Device != w.Device || g.Tag != w.Tag || !g.Value.Equal(w.Value) || g.Quality != w.Quality ||
					g.SourceTime != w.SourceTime || g.Unit != units[w.Tag] {
					t.Errorf("record %d: got %s/%s %v (%s) %v %d %q, want %s/%s %v (%s) %v %d %q", i,
						g.Device, g.Tag, g.Value, g.Value.Kind, g.Quality, g.SourceTime, g.Unit,
						w.Device, w.Tag, w.Value, w.Value.Kind, w.Quality, w.SourceTime, units[w.Tag])
				}
			}
		})
	}
}

// TestHostSeqGap plays an edge node by hand: a skipped seq makes the host
// ask for a rebirth (NCMD) and mark the node's tags UNCERTAIN; the rebirth
// makes them GOOD again, and the NDEATH of the session BAD.
func TestHostSeqGap(t *testing.T) {
	for _, b := range brokers {
		t.Run(b.name, func(t *testing.T) {
			addr := b.start(t)
			o := observe(t, addr, "spBv1.0/plant/NCMD/#")
			host := &sparkplug.Host{HostConfig: sparkplug.HostConfig{Groups: []string{"plant"}, Device: "{node}/{device}", BatchInterval: conf.Duration(time.Millisecond)}}
			host.URL = "tcp://" + addr
			henv, msgs := startConn(t, "host", host)
			waitUp(t, henv)

			ts := nowMS()
			metric := func(v int64) *spb.Payload_Metric {
				return &spb.Payload_Metric{Alias: proto.Uint64(1), Timestamp: ts, Value: &spb.Payload_Metric_LongValue{LongValue: uint64(v)}}
			}
			nbirth := func(seq uint64) []byte {
				return mustMarshal(t, &spb.Payload{Timestamp: ts, Seq: proto.Uint64(seq), Metrics: []*spb.Payload_Metric{
					{Name: proto.String("bdSeq"), Timestamp: ts, Datatype: proto.Uint32(uint32(spb.DataType_Int64)), Value: &spb.Payload_Metric_LongValue{LongValue: 3}},
					{Name: proto.String("Node Control/Rebirth"), Timestamp: ts, Datatype: proto.Uint32(uint32(spb.DataType_Boolean)), Value: &spb.Payload_Metric_BooleanValue{}},
				}})
			}
			dbirth := func(seq uint64) []byte {
				return mustMarshal(t, &spb.Payload{Timestamp: ts, Seq: proto.Uint64(seq), Metrics: []*spb.Payload_Metric{
					{Name: proto.String("rpm"), Alias: proto.Uint64(1), Timestamp: ts, Datatype: proto.Uint32(uint32(spb.DataType_Int32)), Value: &spb.Payload_Metric_IntValue{IntValue: 10}},
				}})
			}
			ddata := func(seq uint64, v int64) []byte {
				return mustMarshal(t, &spb.Payload{Timestamp: ts, Seq: proto.Uint64(seq), Metrics: []*spb.Payload_Metric{metric(v)}})
			}
			o.publish(t, "spBv1.0/plant/NBIRTH/n1", 0, false, nbirth(0))
			o.publish(t, "spBv1.0/plant/DBIRTH/n1/pump", 0, false, dbirth(1))
			o.publish(t, "spBv1.0/plant/DDATA/n1/pump", 0, false, ddata(2, 11))
			o.publish(t, "spBv1.0/plant/DDATA/n1/pump", 0, false, ddata(4, 13)) // 3 skipped
			// The records first: the host's emit waits until they are read
			// (the test bus takes a batch only when the reader does), and
			// with it the ingest of the gap that asks for the rebirth.
			got := collect(t, msgs, 4, nil)
			req := o.next(t, 20*time.Second, "rebirth request", verb(sparkplug.NCMD))
			if req.topic.Node != "n1" || !metricByName(req.p, "Node Control/Rebirth").GetBooleanValue() || req.p.Seq != nil {
				t.Fatalf("rebirth request: %v", req.p)
			}
			want := []struct {
				v int64
				q bus.Quality
			}{{10, bus.Good}, {11, bus.Good}, {11, bus.Uncertain}, {13, bus.Uncertain}}
			for i, w := range want {
				if got[i].Device != "n1/pump" || got[i].Tag != "rpm" || got[i].Value.Long() != w.v || got[i].Quality != w.q {
					t.Fatalf("record %d: %+v, want rpm=%d %v", i, got[i], w.v, w.q)
				}
			}
			// The rebirth: GOOD again; then the session's death: BAD.
			o.publish(t, "spBv1.0/plant/NBIRTH/n1", 0, false, nbirth(0))
			o.publish(t, "spBv1.0/plant/DBIRTH/n1/pump", 0, false, dbirth(1))
			o.publish(t, "spBv1.0/plant/DDATA/n1/pump", 0, false, ddata(2, 12))
			o.publish(t, "spBv1.0/plant/NDEATH/n1", 1, false, mustMarshal(t, &spb.Payload{Timestamp: ts, Metrics: []*spb.Payload_Metric{
				{Name: proto.String("bdSeq"), Datatype: proto.Uint32(uint32(spb.DataType_Int64)), Value: &spb.Payload_Metric_LongValue{LongValue: 3}}}}))
			got = collect(t, msgs, 3, nil)
			if got[0].Quality != bus.Good || got[1].Value.Long() != 12 || got[1].Quality != bus.Good || got[2].Quality != bus.Bad || !got[2].Value.IsNull() {
				t.Fatalf("after the rebirth and death: %+v", got)
			}
		})
	}
}
